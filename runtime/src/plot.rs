//! plot: to be written.
