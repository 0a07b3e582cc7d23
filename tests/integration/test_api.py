"""The API's OpenAPI document (GET /monitor/api/v1/openapi.json) against a real daemon: it is
OpenAPI 3, every GET path without parameters answers as documented (200, or 401 without
credentials where it names a scope), JSON GETs carry an ETag and answer 304 to If-None-Match,
and GET /workspaces pages with ?limit= and ?after=.

Run: cd tests/integration && CK_BINARY=../../build/cloudyknight python3 -m unittest -v test_api
"""

import unittest

from harness import DaemonTestCase

API = "/monitor/api/v1"
SECURED = {"read", "deploy", "admin", "any"}


class OpenApiTest(DaemonTestCase):
    daemon_options = dict(fixtures=["static", "echo"])

    def test_document_is_openapi_3(self):
        r = self.daemon.request("GET", API + "/openapi.json")
        self.assertStatus(r, 200)
        self.assertEqual(r.header("Content-Type"), "application/json")
        doc = r.json()
        self.assertTrue(doc["openapi"].startswith("3."), doc.get("openapi"))
        self.assertTrue(doc["info"]["title"])
        self.assertTrue(doc["info"]["version"])
        self.assertIn(API + "/workspaces", doc["paths"])
        self.assertIn("bearer", doc["components"]["securitySchemes"])
        for path, item in doc["paths"].items():
            self.assertTrue(path.startswith("/monitor/"), path)
            for method, op in item.items():
                self.assertIn(method, {"get", "post", "delete", "put", "patch"}, path)
                self.assertIn("responses", op, f"{method} {path}")

    def test_every_plain_get_answers_as_documented(self):
        doc = self.daemon.request("GET", API + "/openapi.json").json()
        checked = 0
        for path, item in doc["paths"].items():
            op = item.get("get")
            if op is None or "{" in path:
                continue
            r = self.daemon.request("GET", path)
            scope = op.get("x-scope", "none")
            expected = 401 if scope in SECURED else 200
            self.assertEqual(r.status, expected, f"GET {path} (x-scope {scope}): {r.text()[:300]}")
            self.assertIn(str(expected), op["responses"], f"GET {path} does not document {expected}")
            checked += 1
        self.assertGreaterEqual(checked, 10)

    def test_etag_and_304(self):
        r = self.daemon.request("GET", API + "/status")
        self.assertStatus(r, 200)
        self.assertEqual(r.header("Cache-Control"), "no-cache")
        etag = r.header("ETag")
        self.assertTrue(etag and etag.startswith('"') and etag.endswith('"'), etag)
        doc = self.daemon.request("GET", API + "/openapi.json")
        again = self.daemon.request("GET", API + "/openapi.json",
                                    headers={"If-None-Match": doc.header("ETag")})
        self.assertStatus(again, 304)
        self.assertEqual(again.body, b"")

    def test_workspaces_page(self):
        all_names = [w["name"] for w in self.daemon.request("GET", API + "/workspaces").json()["workspaces"]]
        self.assertGreaterEqual(len(all_names), 2, all_names)
        first = self.daemon.request("GET", API + "/workspaces?limit=1").json()
        self.assertEqual([w["name"] for w in first["workspaces"]], all_names[:1])
        self.assertEqual(first["next"], all_names[0])
        rest = self.daemon.request("GET", API + "/workspaces?after=" + first["next"]).json()
        self.assertEqual([w["name"] for w in rest["workspaces"]], all_names[1:])
        self.assertIsNone(rest["next"])
        self.assertStatus(self.daemon.request("GET", API + "/workspaces?limit=0"), 400)


if __name__ == "__main__":
    unittest.main()
