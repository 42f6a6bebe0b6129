-- DICOM nodes added through the admin API (the nodes file holds the others): AE title, address, TLS and
-- the services the node may use. The dimse role reloads this table every few seconds.
CREATE TABLE dicom_node (
  ae_title    text PRIMARY KEY,
  host        text NOT NULL,
  port        integer NOT NULL CHECK (port BETWEEN 1 AND 65535),
  tls         boolean NOT NULL DEFAULT false,
  services    text[] NOT NULL,
  updated_at  timestamptz NOT NULL DEFAULT now()
);
