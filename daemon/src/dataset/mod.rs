//! What ingest needs to know about a data set without decoding it: is it
//! well formed, and which study, series and instance is it.

mod scan;
mod syntax;

pub use scan::{DatasetScanner, ScanError, Summary};
pub use syntax::{Encoding, SyntaxError};
