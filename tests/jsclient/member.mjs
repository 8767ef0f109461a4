// A Matrix member driven by matrix-js-sdk with its Rust crypto (the stack inside Element), for
// coopbot's real-Synapse tests. Driven by tests/harness/jsmember.py over JSON lines:
//   stdin:  {"id": 1, "op": "login", ...}
//   stdout: {"id": 1, "ok": true, "result": ...} or {"id": 1, "ok": false, "error": "..."}
// Everything the SDK logs goes to stderr, so stdout carries only answers.

import * as readline from "node:readline";

for (const level of ["log", "info", "debug", "warn", "error", "trace"]) {
  console[level] = (...args) => process.stderr.write(args.map(String).join(" ") + "\n");
}

const sdk = await import("matrix-js-sdk");
const { OnlySignedDevicesIsolationMode, VerificationPhase, VerifierEvent } = await import(
  "matrix-js-sdk/lib/crypto-api/index.js"
);

let client = null;
let password = null;
// Every timeline event seen, per room, in receive order (decrypted where possible).
const timelines = new Map();
const waiters = new Set();

function wake() {
  for (const waiter of [...waiters]) waiter();
}

function record(event) {
  const roomId = event.getRoomId();
  if (!roomId) return;
  const list = timelines.get(roomId) ?? [];
  if (!list.includes(event)) list.push(event);
  timelines.set(roomId, list);
  wake();
}

function describe(event) {
  return {
    event_id: event.getId(),
    sender: event.getSender(),
    type: event.getType(),
    content: event.getContent(),
    decryption_failure: event.isDecryptionFailure(),
    failure_reason: event.decryptionFailureReason ?? null,
  };
}

// Resolve with condition()'s first truthy value, re-checked whenever something arrives.
function waitFor(condition, timeoutMs, what) {
  return new Promise((resolve, reject) => {
    const check = () => {
      let value;
      try {
        value = condition();
      } catch (error) {
        done();
        reject(error);
        return;
      }
      if (value) {
        done();
        resolve(value);
      }
    };
    const timer = setTimeout(() => {
      done();
      reject(new Error(`timed out after ${timeoutMs} ms waiting for ${what}`));
    }, timeoutMs);
    const done = () => {
      clearTimeout(timer);
      waiters.delete(check);
    };
    waiters.add(check);
    check();
  });
}

async function login({ base_url, user_id, password: secret, device_name }) {
  password = secret;
  const bare = sdk.createClient({ baseUrl: base_url });
  const session = await bare.loginRequest({
    type: "m.login.password",
    identifier: { type: "m.id.user", user: user_id },
    password: secret,
    initial_device_display_name: device_name,
  });
  client = sdk.createClient({
    baseUrl: base_url,
    userId: session.user_id,
    deviceId: session.device_id,
    accessToken: session.access_token,
  });
  await client.initRustCrypto({ useIndexedDB: false });
  const crypto = client.getCrypto();
  // Element's "exclude insecure devices": room keys go only to devices their owner signed, and
  // events from other devices are not decrypted.
  crypto.setDeviceIsolationMode(new OnlySignedDevicesIsolationMode());
  await crypto.bootstrapCrossSigning({
    setupNewCrossSigning: true,
    authUploadDeviceSigningKeys: async (makeRequest) => {
      await makeRequest({
        type: "m.login.password",
        identifier: { type: "m.id.user", user: session.user_id },
        password: secret,
      });
    },
  });
  client.on(sdk.RoomEvent.Timeline, (event) => record(event));
  client.on(sdk.MatrixEventEvent.Decrypted, () => wake());
  client.on(sdk.RoomMemberEvent.Membership, () => wake());
  client.on(sdk.CryptoEvent.VerificationRequestReceived, (request) => {
    verification.incoming.push(request);
    wake();
  });
  const prepared = new Promise((resolve) => {
    client.on(sdk.ClientEvent.Sync, (state) => {
      if (state === "PREPARED") resolve();
      wake();
    });
  });
  await client.startClient({ initialSyncLimit: 50 });
  await prepared;
  return { user_id: session.user_id, device_id: session.device_id };
}

async function createRoom({ invite = [], encrypted = false, power_levels = null, timeout_ms }) {
  const options = { visibility: "private", invite };
  if (encrypted) {
    options.initial_state = [
      { type: "m.room.encryption", state_key: "", content: { algorithm: "m.megolm.v1.aes-sha2" } },
    ];
  }
  if (power_levels) {
    options.power_level_content_override = { users: power_levels };
  }
  const { room_id } = await client.createRoom(options);
  await waitFor(() => client.getRoom(room_id)?.getMyMembership() === "join", timeout_ms,
    `room ${room_id} in the sync`);
  return room_id;
}

async function join({ room, timeout_ms }) {
  await client.joinRoom(room);
  await waitFor(() => client.getRoom(room)?.getMyMembership() === "join", timeout_ms,
    `joining ${room}`);
  return null;
}

async function invite({ room, user }) {
  await client.invite(room, user);
  return null;
}

async function waitJoined({ room, user, timeout_ms }) {
  await waitFor(() => client.getRoom(room)?.getMember(user)?.membership === "join", timeout_ms,
    `${user} joined to ${room}`);
  return null;
}

async function setPowerLevels({ room, users }) {
  const current = client.getRoom(room).currentState.getStateEvents("m.room.power_levels", "");
  const content = { ...current.getContent() };
  content.users = { ...(content.users ?? {}), ...users };
  await client.sendStateEvent(room, "m.room.power_levels", content, "");
  return null;
}

async function send({ room, body, event_type = "m.room.message", content = null }) {
  const payload = content ?? { msgtype: "m.text", body };
  const { event_id } = await client.sendEvent(room, event_type, payload);
  return event_id;
}

async function react({ room, event_id, key }) {
  const content = { "m.relates_to": { rel_type: "m.annotation", event_id, key } };
  const answer = await client.sendEvent(room, "m.reaction", content);
  return answer.event_id;
}

// The first m.room.message from `sender` replying to `to` (a notice that is not a ⏳ status
// message when `final`): its content.
async function waitReply({ room, sender, to, final = true, timeout_ms }) {
  const found = await waitFor(
    () => {
      for (const event of timelines.get(room) ?? []) {
        if (event.getSender() !== sender || event.isDecryptionFailure()) continue;
        if (event.getType() !== "m.room.message") continue;
        const content = event.getContent();
        if (content?.["m.relates_to"]?.["m.in_reply_to"]?.event_id !== to) continue;
        if (final && String(content.body ?? "").startsWith("⏳")) continue;
        return describe(event);
      }
      return null;
    },
    timeout_ms,
    `a reply from ${sender} to ${to}`,
  ).catch((error) => {
    const seen = (timelines.get(room) ?? []).slice(-10).map(describe);
    throw new Error(`${error.message}; last events seen: ${JSON.stringify(seen)}`);
  });
  return found;
}

function events({ room }) {
  return (timelines.get(room) ?? []).map(describe);
}

// What this member's client thinks of another user's devices (keys downloaded fresh).
async function deviceStatus({ user, device }) {
  const crypto = client.getCrypto();
  await crypto.getUserDeviceInfo([user], true);
  const status = await crypto.getDeviceVerificationStatus(user, device);
  const identity = await crypto.getUserVerificationStatus(user);
  return {
    known: status !== null,
    signed_by_owner: status?.signedByOwner ?? false,
    cross_signing_verified: status?.crossSigningVerified ?? false,
    user_cross_signing_verified: identity.isCrossSigningVerified(),
  };
}

async function devices({ user }) {
  const map = await client.getCrypto().getUserDeviceInfo([user], true);
  return [...(map.get(user)?.keys() ?? [])];
}

// ---- SAS verification, as Element's "Verify session" does it (to-device) -------------------

const verification = { incoming: [], request: null, verifier: null, sas: null };

// With `room`, the in-room flow (Element's "Verify user" in a DM); else to-device.
async function verifyStart({ user, device, room = null, timeout_ms }) {
  const crypto = client.getCrypto();
  await crypto.getUserDeviceInfo([user], true);
  const request = room
    ? await crypto.requestVerificationDM(user, room)
    : await crypto.requestDeviceVerification(user, device);
  verification.request = request;
  request.on("change", () => wake());
  await waitFor(() => request.phase === VerificationPhase.Ready || request.phase >= 4,
    timeout_ms, "the bot to answer the verification request (ready)");
  if (request.phase !== VerificationPhase.Ready) {
    throw new Error(`verification request ended in phase ${request.phase}: ${request.cancellationCode}`);
  }
  const verifier = await request.startVerification("m.sas.v1");
  verification.verifier = verifier;
  verifier.on(VerifierEvent.ShowSas, (sas) => {
    verification.sas = sas;
    wake();
  });
  verification.done = verifier.verify().then(
    () => ({ ok: true }),
    (error) => ({ ok: false, error: String(error) }),
  );
  await waitFor(() => verification.sas, timeout_ms, "the SAS emoji");
  return verification.sas.sas.emoji.map(([emoji, name]) => [emoji, name]);
}

async function verifyConfirm({ timeout_ms }) {
  await verification.sas.confirm();
  const timeout = new Promise((resolve) =>
    setTimeout(() => resolve({ ok: false, error: "timed out" }), timeout_ms));
  const outcome = await Promise.race([verification.done, timeout]);
  return { ...outcome, phase: verification.request.phase };
}

// "They don't match": cancels with m.mismatched_sas.
async function verifyMismatch() {
  verification.sas.mismatch();
  const outcome = await verification.done;
  return { ...outcome, phase: verification.request.phase };
}

async function close() {
  client?.stopClient();
  return null;
}

const ops = {
  login, createRoom, setPowerLevels, invite, join, waitJoined, send, react, waitReply, events, deviceStatus, devices,
  verifyStart, verifyConfirm, verifyMismatch, close,
};

const lines = readline.createInterface({ input: process.stdin });
for await (const line of lines) {
  if (!line.trim()) continue;
  const { id, op, ...args } = JSON.parse(line);
  const handler = ops[op];
  let answer;
  try {
    if (!handler) throw new Error(`unknown op ${op}`);
    answer = { id, ok: true, result: (await handler(args)) ?? null };
  } catch (error) {
    answer = { id, ok: false, error: String(error?.stack ?? error) };
  }
  process.stdout.write(JSON.stringify(answer) + "\n");
  if (op === "close") break;
}
process.exit(0);
