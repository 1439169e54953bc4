/**
 * Runs dynalite in a worker thread of the control plane, so the store's own work (request
 * parsing, LevelDB encoding) never delays lease decisions on the API's event loop.
 * Plain JavaScript: Node loads it as it is, however the parent process was started.
 * Protocol with the parent: it posts { port } once listening (or { error }); it closes the
 * store and exits when sent 'close'.
 */
import { parentPort, workerData } from 'node:worker_threads';
import dynalite from 'dynalite';

const server = dynalite({ path: workerData.path, createTableMs: 0, deleteTableMs: 0, updateTableMs: 0 });
server.once('error', (err) => parentPort.postMessage({ error: err.message }));
server.listen(0, '127.0.0.1', () => parentPort.postMessage({ port: server.address().port }));
parentPort.on('message', (msg) => {
  if (msg === 'close') server.close(() => process.exit(0));
});
