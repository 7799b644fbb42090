//! Responding on a live cloud resource: isolation (and its release), and,
//! in later steps, the whole response in the order of volatility.
//!
//! - [`isolate`]: reversible network and lifecycle isolation of an EC2 instance.

pub mod isolate;
