/**
 * Routing at ingest (see ingest-instance.ts `routing`): the routes decide where an indexed instance goes;
 * each destination gets an `export_request` row written in the index transaction, then a job on its
 * queue after the commit.
 */
import type { ExportPlan } from '@portico/db';
import type { IndexedInstance } from './jobs/ingest-instance.ts';

/** Where an instance goes: one plan per destination (none: it stays here only). Pure. */
export type Router = (indexed: IndexedInstance) => readonly ExportPlan[];
