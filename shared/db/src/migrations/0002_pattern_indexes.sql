-- Prefix wildcard matching (PatientID=ABC*, AccessionNumber=ABC*) under a non-C collation needs
-- text_pattern_ops indexes; the equality indexes of 0001 serve exact matches only.
CREATE INDEX study_patient_id_pattern_idx ON study (patient_id text_pattern_ops);
CREATE INDEX study_accession_number_pattern_idx ON study (accession_number text_pattern_ops);
