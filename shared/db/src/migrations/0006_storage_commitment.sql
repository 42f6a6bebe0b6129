-- Storage commitment asked of a DIMSE destination after a batch (PS3.4 Annex J), per (instance,
-- destination): the export row of the delivery carries the outcome of the last request for it.
--
-- commitment_status: requested (N-ACTION accepted by the destination, N-EVENT-REPORT awaited), committed,
-- failed (the destination listed it in the Failed SOP Sequence; commitment_error holds the Failure Reason),
-- refused (no N-ACTION could be made: no Storage Commitment presentation context accepted, a failure
-- status, or the destination could not be reached), timeout (no report within
-- PORTICO_EXPORT_COMMITMENT_TIMEOUT_MS). NULL: never asked.
--
-- commitment_transaction_uid names the request: a report is recorded only on rows still holding that
-- UID, so a report arriving after the instance was sent again (a new request) changes nothing.
-- commitment_resends counts deliveries made again because commitment failed (the limit is
-- PORTICO_EXPORT_COMMITMENT_MAX_RESENDS); an operator's retry or replay, or a newer copy, resets it.
ALTER TABLE export_request
  ADD COLUMN commitment_status text CONSTRAINT export_request_commitment_status_check
    CHECK (commitment_status IN ('requested', 'committed', 'failed', 'refused', 'timeout')),
  ADD COLUMN commitment_transaction_uid text,
  ADD COLUMN commitment_requested_at timestamptz,
  ADD COLUMN commitment_answered_at timestamptz,
  ADD COLUMN commitment_error text,
  ADD COLUMN commitment_resends integer NOT NULL DEFAULT 0;

-- Reports are matched by Transaction UID; the timeout sweep looks for requests still open.
CREATE INDEX export_request_commitment_transaction_idx ON export_request (commitment_transaction_uid)
  WHERE commitment_transaction_uid IS NOT NULL;
CREATE INDEX export_request_commitment_open_idx ON export_request (commitment_requested_at)
  WHERE commitment_status = 'requested';
