// tests/node/mcp-sdk.test.mjs - the MCP server driven by the official TypeScript SDK client,
// with OAuth access tokens minted here with `jose` against a test JWKS.
//
// Starts `stockade serve` (code-executor, agent sandbox, MCP) on a free loopback port with a
// config whose mcp.oauth.jwksFile is a key set generated here, then: connects, lists tools,
// calls execute_code (JavaScript and Python), drives a sandbox through every sandbox_* tool
// (streaming a long command as progress notifications), and checks token handling: valid,
// expired, wrong audience, wrong issuer, wrong key, alg none, missing scope, no token.
import { spawn, execFileSync } from "node:child_process";
import fs from "node:fs";
import net from "node:net";
import os from "node:os";
import path from "node:path";
import { Client } from "@modelcontextprotocol/sdk/client/index.js";
import { StreamableHTTPClientTransport } from "@modelcontextprotocol/sdk/client/streamableHttp.js";
import * as jose from "jose";

const BIN = process.env.STOCKADE_BIN || path.resolve("build/stockade");
let n = 0, failed = 0;
const ok = (name) => console.log(`ok ${++n} - ${name}`);
const notOk = (name, why) => { failed++; console.log(`not ok ${++n} - ${name}`); if (why) console.log(`#   ${String(why).split("\n").join("\n#   ")}`); };
const skip = (name, why) => console.log(`ok ${++n} - ${name} # SKIP ${why}`);
const check = (name, cond, why) => (cond ? ok(name) : notOk(name, why));
const eq = (name, got, want) => check(name, JSON.stringify(got) === JSON.stringify(want), `got ${JSON.stringify(got)}, want ${JSON.stringify(want)}`);

const freePort = () => new Promise((res) => { const s = net.createServer(); s.listen(0, "127.0.0.1", () => { const p = s.address().port; s.close(() => res(p)); }); });
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

const dir = fs.mkdtempSync(path.join(os.tmpdir(), "stockade-mcp-"));
const port = await freePort();
const base = `http://127.0.0.1:${port}`;
const resource = `${base}/mcp`;
const issuer = "https://auth.test.example";

// Keys: the issuer's signing key (in the JWKS) and a stranger's key (not in it).
const { publicKey, privateKey } = await jose.generateKeyPair("ES256", { extractable: true });
const stranger = await jose.generateKeyPair("ES256", { extractable: true });
const jwk = { ...(await jose.exportJWK(publicKey)), kid: "k1", alg: "ES256", use: "sig" };
fs.writeFileSync(path.join(dir, "jwks.json"), JSON.stringify({ keys: [jwk] }));

async function token({ scope = "execute sandbox:read sandbox:write", aud = resource, iss = issuer, exp = "10m", key = privateKey, kid = "k1", sub = "alice" } = {}) {
  let t = new jose.SignJWT({ scope }).setProtectedHeader({ alg: "ES256", kid }).setSubject(sub).setIssuedAt().setIssuer(iss).setAudience(aud);
  t = typeof exp === "number" ? t.setExpirationTime(exp) : t.setExpirationTime(exp);
  return t.sign(key);
}

// The service: sandbox on gVisor when runsc is there (it is installed by scripts/deps.sh).
execFileSync(BIN, ["keys", "generate", "--out", path.join(dir, "keys")], { stdio: "ignore" });
const haveRunsc = (() => { try { execFileSync("runsc", ["--version"], { stdio: "ignore" }); return process.getuid() === 0; } catch { return false; } })();
fs.writeFileSync(path.join(dir, "cfg.yaml"), `listen: 127.0.0.1:${port}
dataDir: ${dir}/data
apiTokens: [api-token-0123456789abcdef]
encryptionKey: backend-encryption-key-0123456789
jwtSecret: backend-jwt-secret-0123456789abcdef
rr:
  enabled: ${haveRunsc}
  jsExecutor: {enabled: false}
  gitServer: {enabled: false}
  blobStorage: {filesystem: {path: ${dir}/blobs}}
  agentSandbox:
    enabled: ${haveRunsc}
    platform: ptrace
    jwtPrivateKeyFile: ${dir}/keys/private_key.pem
    jwtPublicKeyFile: ${dir}/keys/public_key.pem
    encryptionKeyFile: ${dir}/keys/encryption_key.txt
    sandbox: {workspaceDir: ${dir}/sbx}
    scaling: {prewarmPoolSize: 0}
mcp:
  enabled: true
  resource: ${resource}
  oauth:
    authorizationServers: [${issuer}]
    jwksFile: ${dir}/jwks.json
`);
const log = fs.openSync(path.join(dir, "serve.log"), "w");
const srv = spawn(BIN, ["serve", "--config", path.join(dir, "cfg.yaml")], { stdio: ["ignore", log, log] });
let exited = false;
srv.on("exit", () => { exited = true; });

async function cleanup() {
  if (!exited) { srv.kill("SIGTERM"); for (let i = 0; i < 300 && !exited; i++) await sleep(100); if (!exited) srv.kill("SIGKILL"); }
  const root = path.join(dir, "sbx", "runsc");
  if (fs.existsSync(root)) {
    try { for (const id of execFileSync("runsc", ["--root", root, "list", "-quiet"]).toString().split("\n").filter(Boolean)) execFileSync("runsc", ["--root", root, "delete", "-force", id], { stdio: "ignore" }); } catch {}
  }
  try { for (const line of fs.readFileSync("/proc/mounts", "utf8").split("\n")) { const m = line.split(" ")[1]; if (m && m.startsWith(dir)) execFileSync("umount", ["-l", m], { stdio: "ignore" }); } } catch {}
  if (!process.env.KEEP) fs.rmSync(dir, { recursive: true, force: true });
}

try {
  let up = false;
  for (let i = 0; i < 600 && !exited; i++) { try { const r = await fetch(`${base}/healthz`); if (r.status < 500) { up = true; break; } } catch {} await sleep(100); }
  if (!up) { notOk("service starts", fs.readFileSync(path.join(dir, "serve.log"), "utf8").slice(-3000)); throw new Error("no server"); }
  ok("service starts with MCP and OAuth");

  // ---- protected resource metadata and 401 --------------------------------------------------
  const meta = await (await fetch(`${base}/.well-known/oauth-protected-resource/mcp`)).json();
  eq("metadata: resource", meta.resource, resource);
  eq("metadata: authorization servers", meta.authorization_servers, [issuer]);
  check("metadata: scopes", meta.scopes_supported.includes("execute") && meta.scopes_supported.includes("sandbox:write"), JSON.stringify(meta));
  const meta2 = await fetch(`${base}/.well-known/oauth-protected-resource`);
  eq("metadata (root form): 200", meta2.status, 200);

  const initBody = JSON.stringify({ jsonrpc: "2.0", id: 1, method: "initialize", params: { protocolVersion: "2025-11-25", capabilities: {}, clientInfo: { name: "t", version: "1" } } });
  const post = (tok, body = initBody, extra = {}) => fetch(`${base}/mcp`, { method: "POST", headers: { "Content-Type": "application/json", Accept: "application/json, text/event-stream", ...(tok ? { Authorization: `Bearer ${tok}` } : {}), ...extra }, body });
  let r = await post(null);
  eq("no token: 401", r.status, 401);
  check("no token: WWW-Authenticate names the metadata", (r.headers.get("www-authenticate") || "").includes(`resource_metadata="${base}/.well-known/oauth-protected-resource/mcp"`), r.headers.get("www-authenticate"));

  const bad = {
    "expired token": await token({ exp: Math.floor(Date.now() / 1000) - 3600 }),
    "wrong audience": await token({ aud: "https://other.example/mcp" }),
    "wrong issuer": await token({ iss: "https://evil.example" }),
    "wrong key": await token({ key: stranger.privateKey }),
    "alg none": (() => { const b = (o) => Buffer.from(JSON.stringify(o)).toString("base64url"); return `${b({ alg: "none", typ: "JWT" })}.${b({ sub: "alice", aud: resource, iss: issuer, scope: "execute", exp: Math.floor(Date.now() / 1000) + 600 })}.`; })(),
    "HS256 signed with the public key": await new jose.SignJWT({ scope: "execute" }).setProtectedHeader({ alg: "HS256", kid: "k1" }).setSubject("alice").setIssuer(issuer).setAudience(resource).setExpirationTime("10m").sign(new TextEncoder().encode(JSON.stringify(jwk))),
    "garbage": "not.a.jwt",
  };
  for (const [name, t] of Object.entries(bad)) {
    r = await post(t);
    const h = r.headers.get("www-authenticate") || "";
    check(`${name}: 401 invalid_token`, r.status === 401 && h.includes('error="invalid_token"'), `${r.status} ${h}`);
  }
  r = await post(await token());
  eq("valid token: initialize 200", r.status, 200);

  // ---- the SDK client ------------------------------------------------------------------------
  async function connect(tok) {
    const transport = new StreamableHTTPClientTransport(new URL(resource), { requestInit: { headers: { Authorization: `Bearer ${tok}` } } });
    const client = new Client({ name: "stockade-test", version: "1.0.0" });
    await client.connect(transport);
    return { client, transport };
  }
  const { client } = await connect(await token());
  ok("SDK client connects");
  const tools = (await client.listTools()).tools;
  const names = tools.map((t) => t.name);
  check("tools/list has execute_code", names.includes("execute_code"), names.join(","));
  check("every tool has a description and an object schema", tools.every((t) => t.description && t.inputSchema && t.inputSchema.type === "object"), "");

  let res = await client.callTool({ name: "execute_code", arguments: { language: "javascript", code: "console.log('hi'); return params.a * 2", params: { a: 21 } } });
  check("execute_code js: not an error", !res.isError, JSON.stringify(res));
  eq("execute_code js: structured result", res.structuredContent?.result, 42);
  eq("execute_code js: stdout", res.structuredContent?.stdout, "hi\n");
  res = await client.callTool({ name: "execute_code", arguments: { language: "python", code: "import math\nreturn {'r': math.sqrt(params['x'])}", params: { x: 16 } } });
  eq("execute_code python: structured result", res.structuredContent?.result, { r: 4 });
  res = await client.callTool({ name: "execute_code", arguments: { language: "python", code: "x = 1\nraise ValueError('boom')" } });
  check("execute_code failure: isError with the exception", res.isError === true && JSON.stringify(res.content).includes("boom"), JSON.stringify(res));
  eq("execute_code failure: structured status", res.structuredContent?.status, "error");
  try {
    await client.callTool({ name: "execute_code", arguments: { language: "cobol", code: "x" } });
    notOk("bad argument: JSON-RPC error");
  } catch (e) { check("bad argument: JSON-RPC -32602", e.code === -32602, `${e.code} ${e.message}`); }
  try {
    await client.callTool({ name: "no_such_tool", arguments: {} });
    notOk("unknown tool: JSON-RPC error");
  } catch (e) { check("unknown tool: JSON-RPC -32602", e.code === -32602, `${e.code} ${e.message}`); }

  // A token without the scope a tool needs.
  {
    const { client: c2 } = await connect(await token({ scope: "sandbox:read" }));
    try { await c2.callTool({ name: "execute_code", arguments: { language: "javascript", code: "return 1" } }); notOk("missing scope: refused"); }
    catch (e) { check("missing scope: 403 insufficient_scope", /403|insufficient_scope/.test(String(e.message)), String(e.message)); }
    await c2.close();
  }
  const t2 = await token({ scope: "sandbox:read" });
  const init2 = await post(t2);
  const sid2 = init2.headers.get("mcp-session-id");
  r = await post(t2, JSON.stringify({ jsonrpc: "2.0", id: 2, method: "tools/call", params: { name: "execute_code", arguments: { language: "javascript", code: "return 1" } } }), { "Mcp-Session-Id": sid2, "MCP-Protocol-Version": "2025-11-25" });
  check("missing scope: WWW-Authenticate insufficient_scope with the scope", r.status === 403 && /error="insufficient_scope"/.test(r.headers.get("www-authenticate")) && /scope="execute"/.test(r.headers.get("www-authenticate")), `${r.status} ${r.headers.get("www-authenticate")}`);
  // A session cannot be borrowed by another subject.
  r = await post(await token({ sub: "mallory" }), JSON.stringify({ jsonrpc: "2.0", id: 3, method: "ping" }), { "Mcp-Session-Id": sid2 });
  eq("another subject's session id: 404", r.status, 404);

  // ---- sandboxes ----------------------------------------------------------------------------
  if (!names.includes("sandbox_create")) {
    skip("sandbox tools", haveRunsc ? "the agent sandbox did not start (see serve.log)" : "runsc not available or not root");
  } else {
    res = await client.callTool({ name: "sandbox_create", arguments: { env: { GREETING: "hello" } } });
    const id = res.structuredContent?.id;
    check("sandbox_create: id", !res.isError && typeof id === "string", JSON.stringify(res).slice(0, 500));
    res = await client.callTool({ name: "sandbox_list", arguments: {} });
    check("sandbox_list: has it", JSON.stringify(res.structuredContent).includes(id), JSON.stringify(res).slice(0, 500));
    res = await client.callTool({ name: "sandbox_exec", arguments: { sandboxId: id, cmd: "mkdir", args: ["-p", "notes"] } });
    eq("sandbox_exec mkdir: exit 0", res.structuredContent?.exitCode, 0);
    res = await client.callTool({ name: "sandbox_write_file", arguments: { sandboxId: id, path: "notes/a.txt", content: "héllo\n" } });
    check("sandbox_write_file", !res.isError, JSON.stringify(res));
    res = await client.callTool({ name: "sandbox_read_file", arguments: { sandboxId: id, path: "notes/a.txt" } });
    eq("sandbox_read_file: same text", res.structuredContent?.content, "héllo\n");
    res = await client.callTool({ name: "sandbox_write_file", arguments: { sandboxId: id, path: "bin.dat", content: Buffer.from([0, 1, 2, 255]).toString("base64"), encoding: "base64" } });
    res = await client.callTool({ name: "sandbox_read_file", arguments: { sandboxId: id, path: "bin.dat" } });
    check("binary file round trip (base64)", res.structuredContent?.encoding === "base64" && Buffer.from(res.structuredContent.content, "base64").equals(Buffer.from([0, 1, 2, 255])), JSON.stringify(res.structuredContent));
    res = await client.callTool({ name: "sandbox_list_files", arguments: { sandboxId: id } });
    check("sandbox_list_files: entries with types", JSON.stringify(res.structuredContent).includes("notes") && JSON.stringify(res.structuredContent).includes("dir"), JSON.stringify(res.structuredContent));
    res = await client.callTool({ name: "sandbox_read_file", arguments: { sandboxId: id, path: "../../etc/shadow" } });
    check("path escape refused as a tool error", res.isError === true, JSON.stringify(res));
    res = await client.callTool({ name: "sandbox_exec", arguments: { sandboxId: id, cmd: "sh", args: ["-c", "echo $GREETING; exit 3"] } });
    check("sandbox_exec: env and exit code", res.structuredContent?.stdout === "hello\n" && res.structuredContent?.exitCode === 3 && res.isError === true, JSON.stringify(res.structuredContent));
    const progress = [];
    res = await client.callTool({ name: "sandbox_exec", arguments: { sandboxId: id, cmd: "sh", args: ["-c", "for i in 1 2 3; do echo line$i; sleep 0.3; done"] } }, undefined, { onprogress: (p) => progress.push(p) });
    check("streamed exec: output arrives as progress notifications", progress.length >= 3 && progress.map((p) => p.message).join("").includes("line3"), JSON.stringify(progress));
    check("streamed exec: progress increases", progress.every((p, i) => i === 0 || p.progress >= progress[i - 1].progress), JSON.stringify(progress));
    eq("streamed exec: final stdout", res.structuredContent?.stdout, "line1\nline2\nline3\n");
    res = await client.callTool({ name: "sandbox_snapshot", arguments: { sandboxId: id } });
    const snap = res.structuredContent?.id;
    check("sandbox_snapshot: id", !res.isError && typeof snap === "string", JSON.stringify(res).slice(0, 500));
    res = await client.callTool({ name: "sandbox_destroy", arguments: { sandboxId: id } });
    check("sandbox_destroy", !res.isError, JSON.stringify(res));
    res = await client.callTool({ name: "sandbox_exec", arguments: { sandboxId: id, cmd: "true" } });
    check("destroyed sandbox: tool error", res.isError === true, JSON.stringify(res));
    res = await client.callTool({ name: "sandbox_restore", arguments: { snapshotId: snap } });
    const id2 = res.structuredContent?.id;
    check("sandbox_restore: new sandbox", !res.isError && id2 && id2 !== id, JSON.stringify(res).slice(0, 500));
    res = await client.callTool({ name: "sandbox_read_file", arguments: { sandboxId: id2, path: "notes/a.txt" } });
    eq("restored content identical", res.structuredContent?.content, "héllo\n");
    const { client: cb } = await connect(await token({ sub: "bob" }));
    res = await cb.callTool({ name: "sandbox_read_file", arguments: { sandboxId: id2, path: "notes/a.txt" } });
    check("another subject cannot read the sandbox", res.isError === true, JSON.stringify(res));
    res = await cb.callTool({ name: "sandbox_snapshot_list", arguments: {} });
    check("another subject does not see the snapshot", !res.isError && !JSON.stringify(res.structuredContent).includes(snap), JSON.stringify(res).slice(0, 500));
    res = await cb.callTool({ name: "sandbox_snapshot_delete", arguments: { snapshotId: snap } });
    check("another subject cannot delete the snapshot", res.isError === true, JSON.stringify(res).slice(0, 500));
    await cb.close();
    res = await client.callTool({ name: "sandbox_snapshot_list", arguments: {} });
    check("sandbox_snapshot_list: has it", (res.structuredContent?.snapshots || []).some((s) => s.id === snap && s.sandboxId === id), JSON.stringify(res).slice(0, 500));
    res = await client.callTool({ name: "sandbox_snapshot_list", arguments: { sandboxId: id } });
    eq("sandbox_snapshot_list for the sandbox: just it", (res.structuredContent?.snapshots || []).map((s) => s.id).join(","), snap);
    res = await client.callTool({ name: "sandbox_snapshot_delete", arguments: { snapshotId: snap } });
    check("sandbox_snapshot_delete", !res.isError, JSON.stringify(res).slice(0, 500));
    res = await client.callTool({ name: "sandbox_restore", arguments: { snapshotId: snap } });
    check("a deleted snapshot cannot be restored", res.isError === true, JSON.stringify(res).slice(0, 500));
    res = await client.callTool({ name: "sandbox_destroy", arguments: { sandboxId: id2 } });
    check("destroy the restored sandbox", !res.isError, JSON.stringify(res));
  }
  await client.close();
} catch (e) {
  notOk("unexpected exception", (e.stack || e) + (e.cause ? `\ncause: ${e.cause.stack || e.cause}` : ""));
} finally {
  await cleanup();
}
console.log(`1..${n}`);
process.exit(failed ? 1 : 0);
