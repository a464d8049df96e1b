"""Example upstream behind Gatehouse, verifying X-Gatehouse-Jwt-Assertion
with PyJWT against the issuer's JWKS (signature, iss, aud, exp, nbf)
before answering with who is asking. Standard library server, no framework.

    ISSUER=http://auth.localhost:8080 AUDIENCE=app.localhost LISTEN=127.0.0.1:9000 python3 app.py
"""
import json
import os
import socket
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import jwt  # PyJWT[crypto]

ASSERTION_HEADER = "X-Gatehouse-Jwt-Assertion"
ALGORITHMS = ["ES256", "RS256", "EdDSA"]
# The assertion's "typ": the issuer's ID tokens ("JWT") and access tokens
# ("at+jwt") are signed with the same keys, and neither is an assertion.
ASSERTION_TYPE = "gatehouse-assertion+jwt"


def make_verifier(issuer, audience):
    """Return verify(token) -> claims, raising when the token is not valid.

    PyJWKClient caches the JWKS and fetches it again when a token names a
    key ID it has not seen, so Gatehouse's key rotation needs nothing here.
    """
    jwks = jwt.PyJWKClient(issuer + "/.well-known/jwks.json")

    def verify(token):
        signing_key = jwks.get_signing_key_from_jwt(token)
        claims = jwt.decode(
            token,
            signing_key.key,
            algorithms=ALGORITHMS,
            audience=audience,
            issuer=issuer,
            options={"require": ["exp", "iss", "aud", "sub"]},
        )
        typ = str(jwt.get_unverified_header(token).get("typ", "")).lower()
        if typ.removeprefix("application/") != ASSERTION_TYPE:
            raise ValueError("not a Gatehouse assertion (typ %r)" % typ)
        return claims

    return verify


def make_handler(verify, log=lambda line: print(line, file=sys.stderr)):
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self):
            if self.path == "/healthz":  # a public path: no assertion comes with it
                return self._send(200, "text/plain; charset=utf-8", b"ok\n")
            token = self.headers.get(ASSERTION_HEADER)
            try:
                if not token:
                    raise ValueError("no %s header" % ASSERTION_HEADER)
                claims = verify(token)
            except Exception as err:  # any failure to verify is a refusal
                # The reason goes to the log, not to the client.
                log("401 %s %s: %s: %s" % (self.command, self.path, type(err).__name__, err))
                return self._send(401, "text/plain; charset=utf-8", b"invalid or missing identity assertion\n")
            body = {
                "sub": claims["sub"],
                "email": claims.get("email"),
                "name": claims.get("name"),
                "org_id": claims.get("org_id"),
                "org": claims.get("org_slug"),
                "roles": claims.get("roles", []),
                "groups": claims.get("groups", []),
            }
            self._send(200, "application/json", json.dumps(body).encode() + b"\n")

        do_POST = do_PUT = do_PATCH = do_DELETE = do_GET

        def _send(self, status, content_type, body):
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Cache-Control", "no-store")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):  # quiet access log
            pass

    return Handler


def config(env=os.environ):
    """ISSUER, AUDIENCE, LISTEN; the defaults match `gatehouse serve --dev`."""
    host, _, port = env.get("LISTEN", "127.0.0.1:9000").rpartition(":")
    return {
        "issuer": env.get("ISSUER", "http://auth.localhost:8080").rstrip("/"),
        "audience": env.get("AUDIENCE", "app.localhost"),
        "host": host.strip("[]"),
        "port": int(port),
    }


def main():
    c = config()
    if ":" in c["host"]:
        ThreadingHTTPServer.address_family = socket.AF_INET6
    server = ThreadingHTTPServer((c["host"], c["port"]), make_handler(make_verifier(c["issuer"], c["audience"])))
    print("verify-python: listening on %s:%d; issuer %s, audience %s"
          % (c["host"], c["port"], c["issuer"], c["audience"]), file=sys.stderr)
    server.serve_forever()


if __name__ == "__main__":
    main()
