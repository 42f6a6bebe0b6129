-- Modality worklist cache: the scheduled procedure steps the upstream worklist (RIS / MWL SCP) answered
-- most recently, so modalities keep getting their worklist while the upstream is down. One row per
-- scheduled procedure step; `json` is the item as DICOM JSON.
CREATE TABLE worklist_item (
  item_key    text PRIMARY KEY,
  json        jsonb NOT NULL,
  fetched_at  timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX worklist_item_fetched_at_idx ON worklist_item (fetched_at);
