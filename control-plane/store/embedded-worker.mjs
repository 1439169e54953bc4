/**
 * Runs dynalite in a worker thread of the control plane, so the store's own work (request
 * parsing, LevelDB encoding) never delays lease decisions on the API's event loop.
 * Plain JavaScript: Node loads it as it is, however the parent process was started.
 * Protocol with the parent: it posts { port } once listening (or { error }); it closes the
 * store and exits when sent 'close'.
 *
 * dynalite itself checks no credential, and its port is open to every local process; so every
 * request must be signed with the access key id the parent generated for this start (a secret
 * only this process knows), or it is refused before dynalite sees it.
 */
import { parentPort, workerData } from 'node:worker_threads';
import dynalite from 'dynalite';

const server = dynalite({ path: workerData.path, createTableMs: 0, deleteTableMs: 0, updateTableMs: 0 });
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
});
