-- Index of studies, series and instances: the attributes QIDO-RS and C-FIND match on, as columns,
-- plus each instance's DICOM JSON (bulk data as relative BulkDataURIs) and per-frame byte ranges.
-- Dates and times stay DICOM strings (YYYYMMDD, HHMMSS.FFFFFF): range matching compares them as text,
-- which orders correctly for well-formed values and never fails on malformed ones.
-- *_norm columns hold upper-cased, accent-stripped copies for case-insensitive and fuzzy PN matching;
-- they use text_pattern_ops indexes so prefix wildcards (Doe*) are index-backed.

CREATE TABLE study (
  study_pk                  bigint GENERATED ALWAYS AS IDENTITY CONSTRAINT study_pkey PRIMARY KEY,
  study_instance_uid        text NOT NULL CONSTRAINT study_study_instance_uid_key UNIQUE,
  patient_name              text NOT NULL DEFAULT '',
  patient_name_norm         text NOT NULL DEFAULT '',
  patient_id                text NOT NULL DEFAULT '',
  issuer_of_patient_id      text NOT NULL DEFAULT '',
  patient_birth_date        text NOT NULL DEFAULT '',
  patient_sex               text NOT NULL DEFAULT '',
  study_date                text NOT NULL DEFAULT '',
  study_time                text NOT NULL DEFAULT '',
  accession_number          text NOT NULL DEFAULT '',
  study_id                  text NOT NULL DEFAULT '',
  study_description         text NOT NULL DEFAULT '',
  referring_physician_name  text NOT NULL DEFAULT '',
  referring_physician_name_norm text NOT NULL DEFAULT '',
  -- Patient/study module attributes of the latest instance, DICOM JSON (for QIDO study-level answers).
  json                      jsonb NOT NULL DEFAULT '{}'::jsonb,
  created_at                timestamptz NOT NULL DEFAULT now(),
  updated_at                timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX study_patient_name_norm_idx ON study (patient_name_norm text_pattern_ops);
CREATE INDEX study_patient_id_idx ON study (patient_id);
CREATE INDEX study_study_date_idx ON study (study_date, study_time);
CREATE INDEX study_accession_number_idx ON study (accession_number);
CREATE INDEX study_referring_physician_name_norm_idx ON study (referring_physician_name_norm text_pattern_ops);
CREATE INDEX study_created_at_idx ON study (created_at, study_pk);

CREATE TABLE series (
  series_pk                 bigint GENERATED ALWAYS AS IDENTITY CONSTRAINT series_pkey PRIMARY KEY,
  series_instance_uid       text NOT NULL CONSTRAINT series_series_instance_uid_key UNIQUE,
  study_pk                  bigint NOT NULL CONSTRAINT series_study_fk REFERENCES study (study_pk) ON DELETE CASCADE,
  modality                  text NOT NULL DEFAULT '',
  series_number             text NOT NULL DEFAULT '',
  series_description        text NOT NULL DEFAULT '',
  performed_procedure_step_start_date text NOT NULL DEFAULT '',
  json                      jsonb NOT NULL DEFAULT '{}'::jsonb,
  created_at                timestamptz NOT NULL DEFAULT now(),
  updated_at                timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX series_study_pk_idx ON series (study_pk);
CREATE INDEX series_modality_idx ON series (modality);

CREATE TABLE instance (
  instance_pk               bigint GENERATED ALWAYS AS IDENTITY CONSTRAINT instance_pkey PRIMARY KEY,
  sop_instance_uid          text NOT NULL CONSTRAINT instance_sop_instance_uid_key UNIQUE,
  series_pk                 bigint NOT NULL CONSTRAINT instance_series_fk REFERENCES series (series_pk) ON DELETE CASCADE,
  study_pk                  bigint NOT NULL CONSTRAINT instance_study_fk REFERENCES study (study_pk) ON DELETE CASCADE,
  sop_class_uid             text NOT NULL,
  instance_number           text NOT NULL DEFAULT '',
  number_of_frames          integer NOT NULL DEFAULT 1,
  rows                      integer,
  columns                   integer,
  transfer_syntax_uid       text NOT NULL,
  object_key                text NOT NULL,
  object_size               bigint NOT NULL,
  -- Whole data set as DICOM JSON without group 0002, bulk data as relative BulkDataURIs (tag paths).
  json                      jsonb NOT NULL,
  -- Per frame, the list of [offset, length] byte ranges (fragments for encapsulated syntaxes) in the object.
  frames                    jsonb NOT NULL DEFAULT '[]'::jsonb,
  -- Byte range of each bulk data value by tag path.
  bulk_data                 jsonb NOT NULL DEFAULT '{}'::jsonb,
  pixel_data_encapsulated   boolean NOT NULL DEFAULT false,
  source                    text NOT NULL CONSTRAINT instance_source_check CHECK (source IN ('dimse', 'stow-rs', 'import')),
  calling_ae_title          text,
  called_ae_title           text,
  received_at               timestamptz NOT NULL,
  created_at                timestamptz NOT NULL DEFAULT now(),
  updated_at                timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX instance_series_pk_idx ON instance (series_pk, instance_pk);
CREATE INDEX instance_study_pk_idx ON instance (study_pk);
CREATE INDEX instance_sop_class_uid_idx ON instance (sop_class_uid);

-- Audit trail: received / stored / failed, keyed by UIDs (never patient attributes).
CREATE TABLE event (
  event_pk                  bigint GENERATED ALWAYS AS IDENTITY CONSTRAINT event_pkey PRIMARY KEY,
  occurred_at               timestamptz NOT NULL DEFAULT now(),
  kind                      text NOT NULL,
  sop_instance_uid          text,
  study_instance_uid        text,
  detail                    jsonb NOT NULL DEFAULT '{}'::jsonb
);
CREATE INDEX event_sop_instance_uid_idx ON event (sop_instance_uid);
CREATE INDEX event_study_instance_uid_idx ON event (study_instance_uid);
