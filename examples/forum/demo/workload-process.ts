/**
 * Runs the workload in a process of its own, so the users' own work does not slow down the
 * edge and the latency links (which live in the demo's main process) and distort the figures.
 */
import { runWorkload, type WorkloadOptions } from './workload.js';

// Without the demo there is nobody to report to (it stops this process itself when it can).
process.once('disconnect', () => process.exit(1));

process.once('message', async (options: Omit<WorkloadOptions, 'onProgress'>) => {
  try {
    const samples = await runWorkload({
      ...options,
      onProgress: (fraction) => {
        if (process.connected) process.send?.({ progress: fraction });
      },
    });
    process.send?.({ samples }, () => process.exit(0));
  } catch (error) {
    process.send?.({ error: (error as Error).message }, () => process.exit(1));
  }
});
