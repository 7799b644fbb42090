//! `custody serve`: alerts in, isolation and collection out, nothing lost.
//!
//! - [`queue`]: the durable, de-duplicating job queue alerts are written to
//!   before they are acknowledged.

pub mod queue;
