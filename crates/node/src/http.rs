//! `/livez`, `/readyz` and `/metrics`: served by `agentgate_runtime::ops`, ready as
//! [`App::readiness`] says.

use agentgate_runtime::ops::Probe;

use crate::app::App;

impl Probe for App {
    fn readiness(&self) -> Result<(), String> {
        App::readiness(self)
    }
}
