//! `/livez`, `/readyz` and `/metrics`: served by `agentgate_proto::ops`, ready as
//! [`App::readiness`] says.

use agentgate_proto::ops::Probe;

use crate::app::App;

impl Probe for App {
    fn readiness(&self) -> Result<(), String> {
        App::readiness(self)
    }
}
