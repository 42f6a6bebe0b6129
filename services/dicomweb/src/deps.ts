import type { PorticoConfig } from '@portico/config';
import type { Db } from '@portico/db';
import type { JobQueues } from '@portico/jobs';
import type { Logger } from '@portico/logging';
import type { ObjectStore } from '@portico/storage';

/** What the DICOMweb service needs from its composition root. */
export interface DicomwebDeps {
  readonly config: PorticoConfig;
  readonly log: Logger;
  readonly db: Db;
  readonly store: ObjectStore;
  readonly queues: JobQueues;
  /** Serve the OHIF viewer from config.viewer.path at /viewer (the composition root decides per role). */
  readonly viewer?: boolean;
}

/** The same, as seen by a route plugin. */
export type RouteDeps = DicomwebDeps;
