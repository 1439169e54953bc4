import { openStore } from '../../control-plane/store/open.ts';
import { storeConformance } from '../helpers/store-conformance.ts';
import { SimulatedStore } from '../sim/simulated-store.ts';
import { tempDir } from '../helpers/control-plane.ts';

storeConformance('DynamoDB adapter on dynalite', async () => {
  const opened = await openStore({ kind: 'embedded', dataDir: await tempDir(), tableName: 'nfs-ha' });
  return { store: opened.store, close: () => opened.close() };
});

storeConformance("the simulator's SimulatedStore", async () => ({ store: new SimulatedStore(), close: async () => {} }));
