// Package compute is Coffer's Microsoft.Compute resource provider: managed
// disks and snapshots as Azure Resource Manager resources on top of the
// block engine (package blockdev), and the access grants
// (beginGetAccess/endGetAccess) through which their bytes are reached over
// HTTP (the page-blob data plane) and NBD.
//
// Mapping onto the block engine:
//
//   - a disk is a live volume whose ID is the disk's uniqueId;
//   - a snapshot (full or incremental) is a block-engine snapshot whose ID is
//     the snapshot's uniqueId; every snapshot is stored deduplicated and
//     incrementally, "full" only changes what is reported;
//   - a disk created from a snapshot (Copy or Restore) is an instant restore
//     that hydrates in the background; a copy of a disk is a temporary
//     snapshot restored the same way, deleted once the copy has hydrated.
//
// An access grant is a record (in the disk's or snapshot's record) plus a
// token signed by the server with HMAC-SHA256 that names the grant, its
// access and its expiry. The token is the secret part of the SAS URL and the
// NBD export name; every HTTP data request and every NBD connection (and
// every NBD request) checks it again, so expiry and endGetAccess take effect
// at once.
//
// Operations take typed inputs (DiskInput, SnapshotInput, GrantInput) and
// the acting principal, which they record as the creator of what they make.
// The caller's own action on the resource (Microsoft.Compute/disks/write
// for a PUT, beginGetAccess/action for a grant) is decided once, before the
// operation runs, by whoever calls it through the decision point (package
// authorization): the API's route table, the portal, or the backup worker
// acting as a vault's managed identity. What only the operation can know
// it needs it asks the same decision point itself: beginGetAccess on the
// source of a copy or restore (Azure's linked access check, 403
// LinkedAuthorizationFailed), disks/write for a Write grant, and on the
// data path whether a grant's creator still holds the rights it took. The
// package never imports net/http or a concrete store.
package compute
