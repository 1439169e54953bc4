/**
 * Runs dynalite in a worker thread of the control plane, so the store's own work (request
 * parsing, LevelDB encoding) never delays lease decisions on the API's event loop.
 * Plain JavaScript: Node loads it as it is, however the parent process was started.
 * Protocol with the parent: it posts { port } once listening (or { error }); it closes the
 * store and exits when sent 'close'; sent { backup: { id, path } } it writes a consistent copy of
 * everything to `path` and posts { backup: { id, entries } } (or { backup: { id, error } }).
 *
 * The backup reads LevelDB through an iterator, which sees one snapshot of the database: a
 * consistent point in time, taken while the store keeps serving (a lease renewal never waits
 * for it). dynalite does not hand out its database, so its `create` is wrapped to keep it.
 *
 * dynalite itself checks no credential, and its port is open to every local process; so every
 * request must be signed with the access key id the parent generated for this start (a secret
 * only this process knows), or it is refused before dynalite sees it.
 */
import { open, rename } from 'node:fs/promises';
import { parentPort, workerData } from 'node:worker_threads';
import dynalite from 'dynalite';
import dynaliteDb from 'dynalite/db/index.js';

const createDb = dynaliteDb.create;
let db = null;
dynaliteDb.create = (options) => {
  const created = createDb(options);
  db = created.db;
  return created;
};
const server = dynalite({ path: workerData.path, createTableMs: 0, deleteTableMs: 0, updateTableMs: 0 });
dynaliteDb.create = createDb;

/** One JSON line per entry between a header and a trailer that counts them (a cut-off copy is refused on restore). */
async function backup(path) {
  const tmp = `${path}.partial`;
  const file = await open(tmp, 'wx', 0o600);
  let entries = 0;
  try {
    await file.write(`${JSON.stringify({ format: workerData.backupFormat, takenAt: new Date().toISOString() })}\n`);
    let chunk = '';
    for await (const [key, value] of db.iterator({ keyEncoding: 'utf8', valueEncoding: 'utf8' })) {
      chunk += `${JSON.stringify([key, value])}\n`;
      entries += 1;
      if (chunk.length > 1 << 16) {
        await file.write(chunk);
        chunk = '';
      }
    }
    await file.write(`${chunk}${JSON.stringify({ end: entries })}\n`);
    await file.sync();
  } finally {
    await file.close();
  }
  await rename(tmp, path);
  return entries;
}
const [handler] = server.listeners('request');
server.removeAllListeners('request');
const credential = `Credential=${workerData.accessKeyId}/`;
server.on('request', (req, res) => {
  if ((req.headers.authorization ?? '').includes(credential)) return handler(req, res);
  const body = JSON.stringify({ __type: 'com.amazonaws.dynamodb.v20120810#UnrecognizedClientException', message: 'The security token included in the request is invalid.' });
  res.writeHead(400, { 'content-type': 'application/x-amz-json-1.0', 'content-length': Buffer.byteLength(body) });
  res.end(body);
});
server.once('error', (err) => parentPort.postMessage({ error: err.message }));
server.listen(0, '127.0.0.1', () => parentPort.postMessage({ port: server.address().port }));
parentPort.on('message', (msg) => {
  if (msg === 'close') server.close(() => process.exit(0));
  if (msg?.backup) {
    const { id, path } = msg.backup;
    backup(path).then(
      (entries) => parentPort.postMessage({ backup: { id, entries } }),
      (err) => parentPort.postMessage({ backup: { id, error: err.message } }),
    );
  }
});
