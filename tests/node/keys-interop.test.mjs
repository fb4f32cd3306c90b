// keys-interop.test.mjs - the keys `stockade keys generate` writes are standard: the `jose`
// library (an independent JOSE implementation) imports them as ES256 keys, signs with the
// private half and verifies with the public half; the encryption key is 32 bytes of hex.
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as jose from 'jose';

const bin = process.env.STOCKADE_BIN || new URL('../../build/stockade', import.meta.url).pathname;
let n = 0, failed = 0;
const ok = (cond, name) => { n++; if (cond) console.log(`ok ${n} - ${name}`); else { failed++; console.log(`not ok ${n} - ${name}`); } };

const dir = mkdtempSync(join(tmpdir(), 'st-keys-node-'));
try {
  execFileSync(bin, ['keys', 'generate', '--out', dir], { stdio: 'pipe' });
  const priv = readFileSync(join(dir, 'private_key.pem'), 'utf8');
  const pub = readFileSync(join(dir, 'public_key.pem'), 'utf8');
  const privKey = await jose.importPKCS8(priv, 'ES256');
  const pubKey = await jose.importSPKI(pub, 'ES256');
  ok(true, 'jose imports the PKCS#8 private key and SPKI public key as ES256');
  const jwt = await new jose.SignJWT({ sub: 'sandbox-1' }).setProtectedHeader({ alg: 'ES256' })
    .setAudience('stockade').setExpirationTime('5m').sign(privKey);
  const { payload } = await jose.jwtVerify(jwt, pubKey, { audience: 'stockade' });
  ok(payload.sub === 'sandbox-1', 'a token signed with the private key verifies with the public key');
  const jwk = await jose.exportJWK(pubKey);
  ok(jwk.kty === 'EC' && jwk.crv === 'P-256', 'public key is EC P-256');
  const enc = readFileSync(join(dir, 'encryption_key.txt'), 'utf8');
  ok(/^[0-9a-f]{64}$/.test(enc), 'encryption key is exactly 64 hex characters, no newline');
  ok((statSync(join(dir, 'private_key.pem')).mode & 0o777) === 0o600, 'private key is mode 0600');
} catch (e) {
  ok(false, `unexpected error: ${e.message}`);
} finally {
  rmSync(dir, { recursive: true, force: true });
}
console.log(`1..${n}`);
process.exit(failed ? 1 : 0);
