"""The asset schema's validation as it was before it was made cheaper (commit b5cf7ea), kept
only so that `test_validation_equivalence` can prove the faster code answers exactly as it did:
same verdict, same errors, same normalised document, same content hash. Never import it from
library code. Only the imports were changed (to point at this copy)."""
