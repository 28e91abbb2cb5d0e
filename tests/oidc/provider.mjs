// A real OpenID Provider for coffer's SSO tests (tests/it/sso.rs): the
// OpenID-certified `oidc-provider` package with its development
// interactions (a plain HTML login form that takes any login name, then a
// consent form), so a test can sign in with two form POSTs.
//
//   node provider.mjs '<json config>'
//
// config: { "client_id", "client_secret", "redirect_uris": [...],
//           "users": { "<login>": { "email", "email_verified", "groups": [...] } } }
// Listens on 127.0.0.1 on a random port and prints one line,
// `{"issuer":"http://127.0.0.1:PORT"}`, when ready.
//
// Test-only endpoint (not OIDC): POST /test/users/<login> with a JSON body
// replaces that user's claims (e.g. its groups) for the next login.
import http from 'node:http';
import crypto from 'node:crypto';
import Provider from 'oidc-provider';

const cfg = JSON.parse(process.argv[2] ?? '{}');
const users = cfg.users ?? {};

const server = http.createServer();
await new Promise((resolve) => server.listen(0, '127.0.0.1', resolve));
const issuer = `http://127.0.0.1:${server.address().port}`;

const { privateKey } = crypto.generateKeyPairSync('rsa', { modulusLength: 2048 });
const jwk = { ...privateKey.export({ format: 'jwk' }), kid: 'test-rs256', use: 'sig', alg: 'RS256' };

const provider = new Provider(issuer, {
  clients: [{
    client_id: cfg.client_id,
    client_secret: cfg.client_secret,
    // native: loopback redirect URIs match on any port (RFC 8252 7.3),
    // which the CLI's random-port listener needs.
    application_type: 'native',
    redirect_uris: cfg.redirect_uris,
    grant_types: ['authorization_code'],
    response_types: ['code'],
    token_endpoint_auth_method: 'client_secret_basic',
  }],
  jwks: { keys: [jwk] },
  scopes: ['openid', 'email', 'groups', 'offline_access'],
  claims: { openid: ['sub'], email: ['email', 'email_verified'], groups: ['groups'] },
  // Put the granted scopes' claims in the ID token itself (coffer reads
  // email, email_verified and groups from it, not from userinfo).
  conformIdTokenClaims: false,
  pkce: { required: () => true },
  features: { devInteractions: { enabled: true } },
  ttl: { IdToken: 300, AccessToken: 300, AuthorizationCode: 60, Interaction: 600, Session: 600, Grant: 600 },
  async findAccount(_ctx, id) {
    if (!users[id]) return undefined;
    return {
      accountId: id,
      async claims() {
        const u = users[id];
        return { sub: id, email: u.email, email_verified: u.email_verified, groups: u.groups ?? [] };
      },
    };
  },
});
provider.proxy = false;
const handler = provider.callback();

server.on('request', (req, res) => {
  const m = req.url.match(/^\/test\/users\/([A-Za-z0-9_.-]+)$/);
  if (req.method === 'POST' && m) {
    let body = '';
    req.on('data', (c) => { body += c; });
    req.on('end', () => {
      try {
        users[m[1]] = { ...(users[m[1]] ?? {}), ...JSON.parse(body) };
        res.writeHead(204).end();
      } catch (e) {
        res.writeHead(400).end(String(e));
      }
    });
    return;
  }
  handler(req, res);
});

process.stdout.write(`${JSON.stringify({ issuer })}\n`);
