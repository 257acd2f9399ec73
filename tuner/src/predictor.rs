//! The real latency model: the device profile's predictor at a fixed workload.

use crate::latency::{Latency, LatencyModel};
use profiler::predict::{Predictor, Workload};
use profiler::profile::DeviceProfile;
use runtime::plan::Plan;

pub struct ProfileModel {
    predictor: Predictor,
    pub workload: Workload,
}

impl ProfileModel {
    pub fn new(profile: &DeviceProfile, workload: Workload) -> Result<ProfileModel, String> {
        Ok(ProfileModel { predictor: Predictor::new(profile).map_err(|e| e.to_string())?, workload })
    }
}

impl LatencyModel for ProfileModel {
    fn predict(&self, plan: &Plan) -> Result<Latency, String> {
        let p = self.predictor.predict(plan, &self.workload).map_err(|e| e.to_string())?;
        Ok(Latency { prefill_s: p.prefill_s, decode_s: p.decode_s })
    }
}
