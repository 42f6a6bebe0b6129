export { startExport, reconcileExports, type ExportDeps, type ExportService } from './main.ts';
export { loadDestinations, startDestinationRegistry, deliveryLimits, type Destination, type DestinationRegistry } from './destinations.ts';
export { DimseSender, proposalsFor } from './dimse-sender.ts';
export { classifyStoreStatus, type SendResult } from './outcome.ts';
export { deliver, backoffDelay, type DeliverDeps } from './deliver.ts';
export { CommitmentRequester, type CommitmentOptions, type Delivered } from './commitment.ts';
