-- Store-and-forward: one row per (instance, destination) the routes sent it to. The row is the truth;
-- the export queues only carry its key, so a reconciler can re-enqueue whatever a queue lost.
--
-- status: queued (waiting for delivery, or for its next attempt after a failure is recorded as failed),
-- sending (an export process holds it until lease_until), delivered, failed (the last attempt failed; it
-- will be retried), dead (attempts exhausted or a permanent refusal: only an operator's retry revives
-- it), cancelled (by an operator).
--
-- generation counts deliveries asked for: a re-sent instance (a newer received copy), a retry or a replay
-- bumps it, and the queue job id carries it, so an old job finding a newer generation does nothing.
CREATE TABLE export_request (
  export_pk             bigint GENERATED ALWAYS AS IDENTITY CONSTRAINT export_request_pkey PRIMARY KEY,
  sop_instance_uid      text NOT NULL,
  study_instance_uid    text NOT NULL,
  destination           text NOT NULL,
  -- Name of the rule that decided this destination ('default' for the default route, 'replay' for an
  -- operator's replay), and what it asked for this destination.
  rule                  text NOT NULL,
  transfer_syntax_uid   text,
  mutations             jsonb NOT NULL DEFAULT '[]'::jsonb,
  status                text NOT NULL CONSTRAINT export_request_status_check
                          CHECK (status IN ('queued', 'sending', 'delivered', 'failed', 'dead', 'cancelled')),
  generation            integer NOT NULL DEFAULT 1,
  -- received_at of the instance copy this generation delivers: routing the same copy again (an ingest
  -- job that ran twice) does not ask for a second delivery.
  copy_received_at      timestamptz NOT NULL,
  attempts              integer NOT NULL DEFAULT 0,
  last_error            text,
  lease_until           timestamptz,
  -- After a failed attempt: not taken into another delivery's batch before this time (its own job's
  -- backoff decides when it is tried alone).
  next_attempt_at       timestamptz,
  queued_at             timestamptz NOT NULL DEFAULT now(),
  last_attempt_at       timestamptz,
  delivered_at          timestamptz,
  updated_at            timestamptz NOT NULL DEFAULT now(),
  CONSTRAINT export_request_instance_destination_key UNIQUE (sop_instance_uid, destination)
);
CREATE INDEX export_request_study_idx ON export_request (study_instance_uid, destination);
-- The reconciler and the queue views look for unfinished rows per destination.
CREATE INDEX export_request_open_idx ON export_request (destination, status, updated_at)
  WHERE status IN ('queued', 'sending', 'failed');

-- Export settings of nodes added through the admin API (accepted transfer syntaxes, associations, calling
-- AE…), validated by the same schema as the nodes file.
ALTER TABLE dicom_node ADD COLUMN options jsonb NOT NULL DEFAULT '{}'::jsonb;

-- DICOMweb (STOW-RS) destinations added through the admin API; the nodes file lists the others.
CREATE TABLE dicomweb_destination (
  name        text PRIMARY KEY,
  -- url, authorization, bearerToken, batchSize… as in the nodes file's `dicomweb:` entries.
  definition  jsonb NOT NULL,
  updated_at  timestamptz NOT NULL DEFAULT now()
);
