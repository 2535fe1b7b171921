//! The log: segment files of checksummed frames, and the I/O seam.

pub(crate) mod frame;
pub(crate) mod io;
pub(crate) mod scan;
pub(crate) mod segment;
