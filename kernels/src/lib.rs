//! Everything that touches pixels and tensors: preprocessing and inference
//! engines. The spine (ingest, spool, forward) does not depend on pixels; the
//! preprocessing pipeline and the `Engine` trait arrive with the triage work.
#![forbid(unsafe_code)]
