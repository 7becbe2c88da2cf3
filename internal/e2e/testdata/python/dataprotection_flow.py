"""Back up and restore a managed disk on Coffer with Debian's python3-azure.

The flow of Azure's how-to pages for Azure Backup for Managed Disks, with
the Python SDK only: resource groups, a disk written through its SAS, a
backup vault with a managed identity (listed in its group and in the
subscription), a policy, validation (refused until the vault's identity has
its roles), role assignments (created, listed with atScope() and
principalId eq, one deleted at the end), protection, an on-demand backup,
recovery points, restore validation, restore to a new disk, and jobs.

Set up as for any custom cloud: ENDPOINT (https://HOST:PORT, a `coffer
serve --tls` server), TENANT, CLIENT_ID, SECRET, SUBSCRIPTION, and
REQUESTS_CA_BUNDLE pointing at the server's CA. It prints one JSON object:
the IDs of the source and restored disks and what it wrote, so that the
caller can compare the two disks as wholes.
"""

import hashlib
import json
import os
import sys
import time
import uuid

from azure.core.exceptions import HttpResponseError
from azure.identity import ClientSecretCredential
from azure.mgmt.authorization import AuthorizationManagementClient
from azure.mgmt.authorization.models import RoleAssignmentCreateParameters
from azure.mgmt.compute import ComputeManagementClient
from azure.mgmt.dataprotection import DataProtectionClient
from azure.mgmt.dataprotection import models as dp
from azure.mgmt.resource import ResourceManagementClient
from azure.storage.blob import BlobClient

ENDPOINT = os.environ["ENDPOINT"]
SUB = os.environ["SUBSCRIPTION"]
LOCATION = "local"

# Coffer is its own authority: no instance discovery, the server URL as the
# authority host and as the management endpoint, its URL + /.default as
# the token scope.
cred = ClientSecretCredential(os.environ["TENANT"], os.environ["CLIENT_ID"], os.environ["SECRET"],
                              authority=ENDPOINT, instance_discovery=False)
mgmt = dict(base_url=ENDPOINT, credential_scopes=[ENDPOINT + "/.default"])
resources = ResourceManagementClient(cred, SUB, **mgmt)
compute = ComputeManagementClient(cred, SUB, **mgmt)
auth = AuthorizationManagementClient(cred, SUB, **mgmt)
dpc = DataProtectionClient(cred, SUB, **mgmt)


def check(ok, what):
    if not ok:
        sys.exit("check failed: " + what)


def role_id(name):
    """The ID of a built-in role, found by name."""
    roles = list(auth.role_definitions.list("/subscriptions/" + SUB, filter="roleName eq '%s'" % name))
    check(len(roles) == 1, "role %r: %r" % (name, roles))
    return roles[0].id


def assign(scope, role, principal):
    a = auth.role_assignments.create(scope, str(uuid.uuid4()), RoleAssignmentCreateParameters(
        role_definition_id=role_id(role), principal_id=principal, principal_type="ServicePrincipal"))
    check(a.principal_id == principal and a.scope.lower() == scope.lower(), "role assignment %r" % a)
    return a


def ids(items):
    return {i.id.lower() for i in items}


for rg in ("rg-disks", "rg-snaps", "rg-vault", "rg-restore"):
    resources.resource_groups.create_or_update(rg, {"location": LOCATION})

# A 1 GiB disk with data in two places, written through a SAS with the
# storage SDK's page-blob client.
source = compute.disks.begin_create_or_update("rg-disks", "data1", {
    "location": LOCATION, "disk_size_gb": 1, "creation_data": {"create_option": "Empty"}}).result()
sas = compute.disks.begin_grant_access("rg-disks", "data1", {"access": "Write", "duration_in_seconds": 3600}).result()
blob = BlobClient.from_blob_url(sas.access_sas)
written = {}
for i, offset in enumerate((0, 300 << 20)):
    data = hashlib.sha256(b"coffer %d" % i).digest() * (1 << 15)  # 1 MiB
    blob.upload_page(data, offset=offset, length=len(data))
    written[offset] = data
compute.disks.begin_revoke_access("rg-disks", "data1").result()

# The vault, with its managed identity.
vault = dpc.backup_vaults.begin_create_or_update("rg-vault", "vault1", dp.BackupVaultResource(
    location=LOCATION, identity=dp.DppIdentityDetails(type="SystemAssigned"),
    properties=dp.BackupVault(storage_settings=[dp.StorageSetting(datastore_type="VaultStore", type="LocallyRedundant")]))).result()
msi = vault.identity.principal_id
check(bool(msi) and vault.properties.provisioning_state == "Succeeded", "vault %r" % vault)
check([v.name for v in dpc.backup_vaults.get_in_resource_group("rg-vault")] == ["vault1"], "vaults in the group")
check([v.name for v in dpc.backup_vaults.get_in_subscription()] == ["vault1"], "vaults in the subscription")

# The how-to page's policy: every 4 hours, kept 7 days.
operational = dp.DataStoreInfoBase(data_store_type="OperationalStore", object_type="DataStoreInfoBase")
policy = dpc.backup_policies.create_or_update("rg-vault", "vault1", "DiskPolicy", dp.BaseBackupPolicyResource(
    properties=dp.BackupPolicy(datasource_types=["Microsoft.Compute/disks"], policy_rules=[
        dp.AzureBackupRule(name="BackupHourly", data_store=operational,
                           backup_parameters=dp.AzureBackupParams(backup_type="Incremental"),
                           trigger=dp.ScheduleBasedTriggerContext(
                               schedule=dp.BackupSchedule(repeating_time_intervals=["R/2099-01-01T00:00:00+00:00/PT4H"]),
                               tagging_criteria=[dp.TaggingCriteria(is_default=True, tagging_priority=99,
                                                                    tag_info=dp.RetentionTag(tag_name="Default"))])),
        dp.AzureRetentionRule(name="Default", is_default=True, lifecycles=[dp.SourceLifeCycle(
            source_data_store=operational, delete_after=dp.AbsoluteDeleteOption(duration="P7D"))]),
    ])))
check([p.name for p in dpc.backup_policies.list("rg-vault", "vault1")] == ["DiskPolicy"], "policies")

snap_rg = "/subscriptions/%s/resourceGroups/rg-snaps" % SUB
instance = dp.BackupInstance(
    friendly_name="data1", object_type="BackupInstance",
    data_source_info=dp.Datasource(
        datasource_type="Microsoft.Compute/disks", object_type="Datasource", resource_id=source.id,
        resource_location=LOCATION, resource_name="data1", resource_type="Microsoft.Compute/disks", resource_uri=source.id),
    policy_info=dp.PolicyInfo(policy_id=policy.id, policy_parameters=dp.PolicyParameters(data_store_parameters_list=[
        dp.AzureOperationalStoreParameters(data_store_type="OperationalStore", resource_group_id=snap_rg)])))


def validate():
    return dpc.backup_instances.begin_validate_for_backup(
        "rg-vault", "vault1", dp.ValidateForBackupRequest(backup_instance=instance)).result()


# Without the vault identity's roles, validation fails as in Azure.
try:
    validate()
    check(False, "validation passed without the vault identity's roles")
except HttpResponseError as e:
    check(e.error is not None and e.error.code == "UserErrorMissingRequiredPermissions", "validation error %r" % e.error)

# The roles the how-to page assigns, listed back by scope and by principal.
disk_rg = "/subscriptions/%s/resourceGroups/rg-disks" % SUB
disk_assignment = assign(source.id, "Disk Backup Reader", msi)
snap_assignment = assign(snap_rg, "Disk Snapshot Contributor", msi)
check(snap_assignment.id.lower() in ids(auth.role_assignments.list_for_scope(snap_rg, filter="atScope()")),
      "atScope() at the snapshot group")
check(disk_assignment.id.lower() in ids(auth.role_assignments.list_for_scope(disk_rg)),
      "assignments at and below the disk group")
check(disk_assignment.id.lower() not in ids(auth.role_assignments.list_for_scope(disk_rg, filter="atScope()")),
      "atScope() at the disk group lists the disk's assignment below it")
mine = list(auth.role_assignments.list_for_subscription(filter="principalId eq '%s'" % msi))
check(ids(mine) == {disk_assignment.id.lower(), snap_assignment.id.lower()}, "principalId eq: %r" % mine)
validate()

# Protect, back up now, follow the job.
protected = dpc.backup_instances.begin_create_or_update(
    "rg-vault", "vault1", "data1-bi", dp.BackupInstanceResource(properties=instance)).result()
check(protected.properties.current_protection_state == "ProtectionConfigured", "instance %r" % protected.properties)


def wait_job(info):
    """The job an operation started, once it has ended (the operation ends
    when the job is started, as in Azure)."""
    name = info.job_id.rsplit("/", 1)[-1]
    pause = 0.02
    for _ in range(200):
        j = dpc.jobs.get("rg-vault", "vault1", name)
        if j.properties.status != "InProgress":
            return j
        time.sleep(pause)
        pause = min(2 * pause, 1.0)
    sys.exit("job %s did not end" % name)


backup = dpc.backup_instances.begin_adhoc_backup("rg-vault", "vault1", "data1-bi", dp.TriggerBackupRequest(
    backup_rule_options=dp.AdHocBackupRuleOptions(rule_name="BackupHourly",
                                                  trigger_option=dp.AdhocBackupTriggerOption(retention_tag_override="Default")))).result()
backup_job = wait_job(backup)
check((backup_job.properties.operation, backup_job.properties.status) == ("Backup", "Completed"), "backup job %r" % backup_job.properties)

rps = list(dpc.recovery_points.list("rg-vault", "vault1", "data1-bi"))
check(len(rps) == 1, "recovery points %r" % rps)

# Restore to a new disk: the vault identity needs Disk Restore Operator on
# the target group.
restore_rg = "/subscriptions/%s/resourceGroups/rg-restore" % SUB
restore_assignment = assign(restore_rg, "Disk Restore Operator", msi)
target = restore_rg + "/providers/Microsoft.Compute/disks/restored1"
request = dp.AzureBackupRecoveryPointBasedRestoreRequest(
    recovery_point_id=rps[0].name, source_data_store_type="OperationalStore",
    restore_target_info=dp.RestoreTargetInfo(
        recovery_option="FailIfExists", restore_location=LOCATION,
        datasource_info=dp.Datasource(
            datasource_type="Microsoft.Compute/disks", object_type="Datasource", resource_id=target,
            resource_location=LOCATION, resource_name="restored1", resource_type="Microsoft.Compute/disks", resource_uri=target)))
dpc.backup_instances.begin_validate_for_restore(
    "rg-vault", "vault1", "data1-bi", dp.ValidateRestoreRequestObject(restore_request_object=request)).result()
restore = dpc.backup_instances.begin_trigger_restore("rg-vault", "vault1", "data1-bi", request).result()
restore_job = wait_job(restore)
check((restore_job.properties.operation, restore_job.properties.status) == ("Restore", "Completed"), "restore job %r" % restore_job.properties)

# The jobs, as the vault lists them.
jobs = {(j.properties.operation, j.properties.status) for j in dpc.jobs.list("rg-vault", "vault1")}
check(("Backup", "Completed") in jobs and ("Restore", "Completed") in jobs, "jobs %r" % jobs)

# What was written reads back from the restored disk.
restored = compute.disks.get("rg-restore", "restored1")
check(restored.disk_size_gb == 1, "restored disk %r" % restored)
sas = compute.disks.begin_grant_access("rg-restore", "restored1", {"access": "Read", "duration_in_seconds": 3600}).result()
blob = BlobClient.from_blob_url(sas.access_sas)
for offset, data in written.items():
    got = blob.download_blob(offset=offset, length=len(data)).readall()
    check(hashlib.sha256(got).digest() == hashlib.sha256(data).digest(), "restored bytes at %d" % offset)
compute.disks.begin_revoke_access("rg-restore", "restored1").result()

# Azure advises revoking Disk Restore Operator after a restore.
auth.role_assignments.delete_by_id(restore_assignment.id)
check(restore_assignment.id.lower() not in ids(auth.role_assignments.list_for_scope(restore_rg, filter="atScope()")),
      "the restore role assignment is still there")

print(json.dumps({"source": source.id, "restored": restored.id}))
