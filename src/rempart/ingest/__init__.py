"""Loading many resources at once: the synthetic hospital and FHIR files from elsewhere."""
