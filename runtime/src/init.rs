//! init: to be written.
