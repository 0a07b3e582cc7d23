// Workspace names: the rule of src/core/names.cc (validate_workspace_name), checked in the
// same order, so the form refuses exactly what the server would refuse, before sending it.

export const NAME_RULE =
  "names are 1-63 characters of a-z, 0-9 and '-', starting with a letter or digit";

const RESERVED = "monitor";

/** Why `name` is not a valid workspace name, or "" when it is. */
export function nameProblem(name) {
  const bad = (why) => `“${name}” is not a valid name: ${why} (${NAME_RULE}); choose another name.`;
  if (name === "") return `Enter a name for the workspace (${NAME_RULE}).`;
  // The server counts bytes (UTF-8), not characters.
  if (new TextEncoder().encode(name).length > 63) return bad("it is longer than 63 characters");
  if (/[A-Z]/.test(name)) return bad("it has uppercase letters");
  if (!/^[a-z0-9]/.test(name)) return bad("it must start with a lowercase letter or a digit");
  const other = /[^a-z0-9-]/.exec(name);
  if (other) return bad(other[0] === " " ? "it contains a space" : `it contains '${other[0]}'`);
  if (name === RESERVED) return bad("'monitor' is reserved for the control plane");
  return "";
}
