//! Responding on a live cloud resource: isolation (and its release), and
//! the whole response in the order of volatility.
//!
//! - [`isolate`]: reversible network and lifecycle isolation of an EC2 instance.
//! - [`ecs`]: scale-in protection and reversible network isolation of an
//!   ECS task, by rewriting its own security groups.
//! - [`lambda`]: reversible isolation of a Lambda function (reserved concurrency 0).
//! - [`order`]: protect → memory → network isolation → disk → logs.

pub mod ecs;
pub mod isolate;
pub mod lambda;
pub mod order;
