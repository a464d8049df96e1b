"""Runs the example handler against an in-process issuer that publishes a
JWKS of freshly generated keys, with tokens signed the way Gatehouse signs
them (typ gatehouse-assertion+jwt, kid header). Standard library unittest:

    python3 -m unittest -v
"""
import base64
import hashlib
import hmac
import json
import threading
import time
import unittest
import urllib.error
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa

import app

AUDIENCE = "app.localhost"


def b64(data):
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def new_key(kid, alg):
    if alg == "ES256":
        priv = ec.generate_private_key(ec.SECP256R1())
        # Built by hand: RFC 7518 wants x and y at the curve's full 32 bytes
        # (as Gatehouse's go-jose publishes them), and some PyJWT versions'
        # to_jwk drop a leading zero byte, which their from_jwk then refuses.
        nums = priv.public_key().public_numbers()
        jwk = {"kty": "EC", "crv": "P-256", "x": b64(nums.x.to_bytes(32, "big")), "y": b64(nums.y.to_bytes(32, "big"))}
    elif alg == "RS256":
        priv = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        jwk = jwt.algorithms.RSAAlgorithm.to_jwk(priv.public_key())
    else:
        priv = ed25519.Ed25519PrivateKey.generate()
        jwk = jwt.algorithms.OKPAlgorithm.to_jwk(priv.public_key())
    jwk = json.loads(jwk) if isinstance(jwk, str) else jwk
    jwk.update(kid=kid, alg=alg, use="sig")
    return {"kid": kid, "alg": alg, "priv": priv, "jwk": jwk}


def serve(handler):
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, "http://127.0.0.1:%d" % server.server_address[1]


class VerifyTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.published = []
        cls.fetches = 0
        test = cls

        class JWKS(BaseHTTPRequestHandler):
            def do_GET(self):
                if self.path != "/.well-known/jwks.json":
                    self.send_error(404)
                    return
                test.fetches += 1
                body = json.dumps({"keys": test.published}).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/jwk-set+json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args):
                pass

        cls.issuer_server, cls.issuer = serve(JWKS)
        cls.es, cls.rs, cls.ed = (new_key("ES256-1", "ES256"), new_key("RS256-1", "RS256"), new_key("EdDSA-1", "EdDSA"))
        cls.published += [cls.es["jwk"], cls.rs["jwk"], cls.ed["jwk"]]
        cls.logs = []
        handler = app.make_handler(app.make_verifier(cls.issuer, AUDIENCE), log=cls.logs.append)
        cls.app_server, cls.app_url = serve(handler)

    @classmethod
    def tearDownClass(cls):
        cls.app_server.shutdown()
        cls.issuer_server.shutdown()

    def claims(self, **over):
        now = int(time.time())
        c = {
            "iss": self.issuer, "aud": AUDIENCE, "sub": "usr_alice",
            "email": "alice@acme.example", "name": "Alice Admin",
            "org_id": "org_acme", "org_slug": "acme", "roles": ["admin"], "groups": [],
            "iat": now, "nbf": now, "exp": now + 300, "jti": "jti-123",
        }
        c.update(over)
        return {k: v for k, v in c.items() if v is not None}

    def sign(self, key, typ=app.ASSERTION_TYPE, **over):
        headers = {"kid": key["kid"], "typ": typ}
        if not typ:
            headers = {"kid": key["kid"]}
        return jwt.encode(self.claims(**over), key["priv"], algorithm=key["alg"], headers=headers)

    def test_other_tokens_of_the_issuer(self):
        # An ID token ("JWT"), an access token ("at+jwt"), no typ at all.
        for typ in ("JWT", "at+jwt", ""):
            self.refused(self.sign(self.es, typ=typ), "not a Gatehouse assertion")

    def get(self, token, path="/whoami"):
        self.logs.clear()
        req = urllib.request.Request(self.app_url + path)
        if token is not None:
            req.add_header(app.ASSERTION_HEADER, token)
        try:
            with urllib.request.urlopen(req, timeout=10) as resp:
                return resp.status, resp.read().decode(), "\n".join(self.logs)
        except urllib.error.HTTPError as err:
            return err.code, err.read().decode(), "\n".join(self.logs)

    def refused(self, token, reason):
        status, body, log = self.get(token)
        self.assertEqual(status, 401, body)
        self.assertIn(reason, log)
        self.assertNotIn("alice", body)

    def test_valid(self):
        for key in (self.es, self.rs, self.ed):
            status, body, log = self.get(self.sign(key))
            self.assertEqual(status, 200, "%s: %s %s" % (key["alg"], body, log))
            got = json.loads(body)
            self.assertEqual(got["email"], "alice@acme.example")
            self.assertEqual(got["org"], "acme")
            self.assertEqual(got["org_id"], "org_acme")
            self.assertEqual(got["roles"], ["admin"])

    def test_expired(self):
        past = int(time.time()) - 600
        self.refused(self.sign(self.es, iat=past, nbf=past, exp=past + 300), "ExpiredSignatureError")

    def test_missing_exp(self):
        self.refused(self.sign(self.es, exp=None), "MissingRequiredClaimError")

    def test_not_yet_valid(self):
        later = int(time.time()) + 3600
        self.refused(self.sign(self.es, nbf=later, exp=later + 300), "ImmatureSignatureError")

    def test_wrong_audience(self):
        self.refused(self.sign(self.es, aud="globex-app.localhost"), "InvalidAudienceError")

    def test_wrong_issuer(self):
        self.refused(self.sign(self.es, iss="http://evil.localhost:8080"), "InvalidIssuerError")

    def test_missing_header(self):
        self.refused(None, "no X-Gatehouse-Jwt-Assertion header")
        self.refused("not-a-jwt", "DecodeError")

    def test_unknown_key(self):
        stranger = new_key("ES256-unknown", "ES256")
        self.refused(self.sign(stranger), "PyJWKClientError")
        impostor = dict(stranger, kid=self.es["kid"])
        self.refused(self.sign(impostor), "InvalidSignatureError")

    def test_alg_none_and_hs256_with_public_key(self):
        payload = b64(json.dumps(self.claims()).encode())
        none = b64(json.dumps({"alg": "none", "typ": "JWT", "kid": self.es["kid"]}).encode()) + "." + payload + "."
        self.refused(none, "InvalidAlgorithmError")
        pem = self.es["priv"].public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        signing_input = b64(json.dumps({"alg": "HS256", "typ": "JWT", "kid": self.es["kid"]}).encode()) + "." + payload
        mac = hmac.new(pem, signing_input.encode(), hashlib.sha256).digest()
        self.refused(signing_input + "." + b64(mac), "InvalidAlgorithmError")

    def test_alg_of_another_key_type(self):
        # RS256 in the header, the ES256 key's kid: must be a 401, not a crash.
        forged = jwt.encode(self.claims(), self.rs["priv"], algorithm="RS256",
                            headers={"kid": self.es["kid"], "typ": "JWT"})
        status, body, _ = self.get(forged)
        self.assertEqual(status, 401, body)

    def test_key_rotation(self):
        self.assertEqual(self.get(self.sign(self.es))[0], 200)
        before = type(self).fetches
        rotated = new_key("ES256-2", "ES256")
        self.published.append(rotated["jwk"])  # after the client cached the set
        status, body, log = self.get(self.sign(rotated))
        self.assertEqual(status, 200, body + log)
        self.assertEqual(type(self).fetches, before + 1)

    def test_healthz(self):
        self.assertEqual(self.get(None, "/healthz")[0], 200)

    def test_config(self):
        self.assertEqual(app.config({}), {"issuer": "http://auth.localhost:8080", "audience": "app.localhost",
                                          "host": "127.0.0.1", "port": 9000})
        self.assertEqual(app.config({"ISSUER": "https://auth.example.com/", "LISTEN": "[::1]:7000"})["host"], "::1")


if __name__ == "__main__":
    unittest.main()
