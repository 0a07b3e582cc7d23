#include "gateway/pages.h"

#include <cctype>
#include <fmt/format.h>

#include "http/url.h"

namespace ck {
namespace {

using http::html_escape;

constexpr std::string_view kStyle = R"css(
:root{color-scheme:light dark;--bg:#f6f7f9;--card:#fff;--fg:#1d2330;--muted:#5d6778;--line:#dde1e8;--ok:#1a7f37;--warn:#9a6700;--bad:#cf222e}
@media (prefers-color-scheme:dark){:root{--bg:#0f1218;--card:#171b23;--fg:#e6e9ef;--muted:#9aa4b5;--line:#2a303b}}
*{box-sizing:border-box}body{margin:0;font:15px/1.5 system-ui,-apple-system,Segoe UI,Roboto,sans-serif;background:var(--bg);color:var(--fg)}
main{max-width:960px;margin:0 auto;padding:32px 20px}h1{font-size:26px;margin:0 0 4px}p.sub{color:var(--muted);margin:0 0 24px}
ul.grid{list-style:none;padding:0;margin:0;display:grid;gap:14px;grid-template-columns:repeat(auto-fill,minmax(260px,1fr))}
li.card{background:var(--card);border:1px solid var(--line);border-radius:10px;padding:16px;display:flex;flex-direction:column;gap:6px}
.card a.name{font-weight:600;font-size:17px;color:inherit;text-decoration:none}.card a.name:hover{text-decoration:underline}
.icon{font-size:22px;width:28px;height:28px;display:inline-flex;align-items:center;justify-content:center;vertical-align:middle;margin-right:6px}
.icon img{width:28px;height:28px;object-fit:contain}
.meta{color:var(--muted);font-size:13px}.desc{margin:0}.err{color:var(--bad);font-size:13px;white-space:pre-wrap;margin:0}
.status{display:inline-block;font-size:12px;padding:1px 8px;border-radius:999px;border:1px solid currentColor}
.status.running{color:var(--ok)}.status.initializing,.status.creating,.status.stopping{color:var(--warn)}.status.failed{color:var(--bad)}.status.stopped{color:var(--muted)}
.box{background:var(--card);border:1px solid var(--line);border-radius:10px;padding:24px}code{font-family:ui-monospace,monospace}
)css";

std::string icon_html(const WorkspaceView& w) {
  if (w.icon.empty()) return "<span class=\"icon\" aria-hidden=\"true\">&#128193;</span>";
  bool is_url = w.icon.find('/') != std::string::npos || w.icon.find('.') != std::string::npos;
  if (is_url) {
    std::string src = w.icon;
    if (!src.starts_with("/") && !src.starts_with("http://") && !src.starts_with("https://")) {
      src = "/" + w.name + "/" + src;
    }
    return fmt::format("<span class=\"icon\"><img src=\"{}\" alt=\"\"></span>", html_escape(src));
  }
  return fmt::format("<span class=\"icon\" aria-hidden=\"true\">{}</span>", html_escape(w.icon));
}

}  // namespace

std::string render_home_page(const Snapshot& snap, const PublicAddress& address) {
  std::string items;
  std::size_t hidden = 0;
  for (const auto& w : snap.workspaces) {
    if (!w.is_public) {  // private: not even its name on a page anyone can open
      ++hidden;
      continue;
    }
    std::string kind = w.matched.empty() ? w.type : fmt::format("{} — {}", w.type, w.matched);
    std::string error = w.error.empty() ? std::string()
                                        : fmt::format("<p class=\"err\">{}</p>", html_escape(w.error));
    items += fmt::format(
        "<li class=\"card\" data-workspace=\"{0}\"><div>{1}<a class=\"name\" href=\"{6}\">{0}</a></div>"
        "{2}<div class=\"meta\"><span class=\"type\">{3}</span> · <span class=\"status {4}\">{4}</span>"
        "</div>{5}</li>\n",
        html_escape(w.name), icon_html(w),
        w.description.empty() ? std::string()
                              : fmt::format("<p class=\"desc\">{}</p>", html_escape(w.description)),
        html_escape(kind), html_escape(w.status), error,
        html_escape(workspace_link(w.name, address)));
  }
  if (hidden) {
    items += fmt::format(
        "<li class=\"card\"><p class=\"desc\">{} private workspace{}: log in to the "
        "<a href=\"/monitor/\">dashboard</a> to see {}.</p></li>\n",
        hidden, hidden == 1 ? "" : "s", hidden == 1 ? "it" : "them");
  }
  if (items.empty()) {
    items = fmt::format(
        "<li class=\"card\"><p class=\"desc\">No workspaces yet. Add a folder to <code>{}</code> "
        "(static HTML, Node, Python, PHP, Go or Ruby) and it appears here.</p></li>",
        html_escape(snap.storage_location));
  }
  std::string invalid;
  for (const auto& i : snap.invalid) {
    invalid += fmt::format("<li class=\"card\"><strong>{}</strong><p class=\"err\">{}</p></li>",
                           html_escape(i.folder), html_escape(i.error));
  }
  if (!invalid.empty()) {
    invalid = "<h2>Skipped folders</h2><ul class=\"grid\">" + invalid + "</ul>";
  }
  return fmt::format(
      "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\">"
      "<meta name=\"viewport\" content=\"width=device-width,initial-scale=1\">"
      "<title>CloudyKnight workspaces</title><style>{}</style></head><body><main>"
      "<h1>Workspaces</h1><p class=\"sub\">{} workspace{} from <code>{}</code> · runtime: {}</p>"
      "<ul class=\"grid\">{}</ul>{}</main></body></html>",
      kStyle, snap.workspaces.size(), snap.workspaces.size() == 1 ? "" : "s",
      html_escape(snap.storage_location), html_escape(snap.runtime_kind), items, invalid);
}

std::string render_error_page(int status, std::string_view title, std::string_view message,
                              std::string_view hint, bool auto_refresh, std::string_view home) {
  return fmt::format(
      "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\">"
      "<meta name=\"viewport\" content=\"width=device-width,initial-scale=1\">{}"
      "<title>{} {}</title><style>{}</style></head><body><main><div class=\"box\">"
      "<h1>{} {}</h1><p>{}</p><p class=\"meta\">{}</p><p class=\"meta\"><a href=\"{}\">All workspaces</a></p>"
      "</div></main></body></html>",
      auto_refresh ? "<meta http-equiv=\"refresh\" content=\"2\">" : "", status, html_escape(title),
      kStyle, status, html_escape(title), html_escape(message), html_escape(hint),
      html_escape(home));
}

std::string reload_script(std::string_view workspace) {
  // The name is a valid workspace name ([a-z0-9-]), so it needs no escaping inside quotes.
  return fmt::format(
      "<script data-cloudyknight=\"live-reload\">(()=>{{const n=\"{}\";let d=500;"
      "function c(){{const w=new WebSocket((location.protocol===\"https:\"?\"wss://\":\"ws://\")"
      "+location.host+\"/monitor/ws\");w.onopen=()=>{{d=500;w.send(JSON.stringify({{subscribe:[n]}}))}};"
      "w.onmessage=e=>{{try{{const m=JSON.parse(e.data);if(m.type===\"reload\"&&m.workspace===n)"
      "location.reload()}}catch(_){{}}}};w.onclose=()=>{{setTimeout(c,d);d=Math.min(d*2,10000)}}}}c()}})();"
      "</script>",
      workspace);
}

std::string inject_reload_script(std::string html, std::string_view workspace) {
  std::string script = reload_script(workspace);
  static constexpr std::string_view kClose = "</body>";
  std::size_t at = std::string::npos;
  for (std::size_t i = html.size() >= kClose.size() ? html.size() - kClose.size() + 1 : 0; i-- > 0;) {
    bool match = true;
    for (std::size_t k = 0; k < kClose.size() && match; ++k) {
      match = std::tolower(static_cast<unsigned char>(html[i + k])) == kClose[k];
    }
    if (match) {
      at = i;
      break;
    }
  }
  if (at == std::string::npos) {
    html += script;
  } else {
    html.insert(at, script);
  }
  return html;
}

}  // namespace ck
