// Package job is Coffer's durable job machinery, kept in the metadata
// store:
//
//   - Queue: an at-least-once task queue with explicit ack/nack, a lease
//     with expiry, retry with exponential backoff up to a delivery limit,
//     cancellation, de-duplication by task ID and serialization per target
//     (a disk): a task is never leased while another task with the same
//     Target is leased, so two backups of one disk never run at once.
//   - Record: the Azure Backup job (AzureBackupJob) that users see: what
//     ran, on which datasource, with which policy, its status
//     (InProgress, Completed, Failed, Cancelled), times, duration, errors,
//     progress and sizes; listed per vault with filters and kept for at
//     least RetentionPeriod.
//
// The queue and the records are separate: a task is the unit of work a
// worker leases; a record is what the API serves. Task IDs are job IDs.
package job
