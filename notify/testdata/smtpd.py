# A real SMTP server for notify's tests: aiosmtpd (Debian python3-aiosmtpd)
# with STARTTLS required and AUTH PLAIN/LOGIN checked against one user.
# Each message is written to OUTDIR as N.eml. Stops when stdin closes.
# usage: python3 smtpd.py PORT CERT KEY OUTDIR USER PASSWORD
import os
import ssl
import sys

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword

port, cert, key, outdir, user, password = sys.argv[1:7]


class Handler:
    def __init__(self):
        self.n = 0

    async def handle_DATA(self, server, session, envelope):
        self.n += 1
        path = os.path.join(outdir, "%d.eml" % self.n)
        with open(path + ".tmp", "wb") as f:
            f.write(envelope.original_content or envelope.content)
        os.rename(path + ".tmp", path)
        return "250 OK"


def authenticate(server, session, envelope, mechanism, auth_data):
    ok = (isinstance(auth_data, LoginPassword)
          and auth_data.login == user.encode()
          and auth_data.password == password.encode())
    return AuthResult(success=ok)


ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
ctx.load_cert_chain(cert, key)
c = Controller(Handler(), hostname="127.0.0.1", port=int(port), tls_context=ctx,
               require_starttls=True, authenticator=authenticate, auth_required=True)
c.start()
print("READY", flush=True)
sys.stdin.read()
c.stop()
