//! Checking a finalization certificate outside the engine: how a node that
//! runs no consensus (a user or relay following the chain) knows a block it
//! fetched from a peer is final. The certificate must carry a quorum of the
//! genesis validators' signatures over this block's hash.

use commonware_codec::Decode;
use commonware_cryptography::certificate::Verifier as _;
use commonware_parallel::Sequential;

use super::params::{ChainParams, Finalization, Scheme};
use super::ConsensusError;
use crate::ledger::Genesis;

pub struct FinalityVerifier {
    verifier: Scheme,
}

impl FinalityVerifier {
    pub fn new(genesis: &Genesis) -> Result<FinalityVerifier, ConsensusError> {
        let params = ChainParams::new(genesis, None)?;
        Ok(FinalityVerifier {
            verifier: params.verifier(),
        })
    }

    /// True when `proof` is a valid finalization of the block `hash`.
    pub fn verify(&self, hash: &[u8; 32], proof: &[u8]) -> bool {
        let cfg = self.verifier.certificate_codec_config();
        let Ok(f) = Finalization::decode_cfg(proof.to_vec(), &cfg) else {
            return false;
        };
        if f.proposal.round.epoch().get() != 0 || f.proposal.payload.0 != *hash {
            return false;
        }
        let mut rng = commonware_utils::sys_rng();
        f.verify(&mut rng, &self.verifier, &Sequential)
    }
}
