// Package schedule is the time arithmetic of disk backup policies: ISO 8601
// repeating intervals and durations, the time zones Azure names (Windows and
// IANA), the start instants of a schedule, and the retention tag and expiry
// of each recovery point. It is pure: every function takes the times it
// needs, nothing reads the clock, and nothing does I/O.
//
// # Schedules
//
// A policy's schedule is one repeating interval, "R/<date-time>/<period>",
// plus a time zone. The period is PT1H, PT2H, PT4H, PT6H, PT8H, PT12H or
// P1D (Azure Backup for Managed Disks; a weekly P1W schedule is not allowed
// for disks). The date-time must be a full date and time with a UTC offset;
// Azure's docs say only a DateTime is accepted and the time is the backup
// start time. A repetition count ("R5/…") is accepted and ignored, as Azure
// does: backups run indefinitely.
//
// Semantics chosen here (Azure does not document them):
//
//   - The time of day is the wall-clock time written in the date-time
//     ("…T02:00:00+01:00" means 02:00), interpreted in the policy's time zone
//     when one is given, and the written offset is then ignored. This is
//     how Recovery Services policies treat scheduleRunTimes with a
//     scheduleRunTimeZone, and it keeps "daily at 02:00" at 02:00 local
//     time on both sides of a DST change. Without a time zone the
//     written offset is the zone (a fixed offset).
//   - Hourly schedules are spread through the day as wall-clock times of day:
//     every N hours starting at the anchor's time of day, so PT4H at 02:00
//     runs at 02, 06, 10, 14, 18 and 22 local time every day. Across a DST
//     change the slots stay on those wall-clock times, so the gap between
//     two backups around the change is N±1 hours.
//   - A slot whose local time does not exist (spring forward) runs at the
//     same wall-clock time plus the length of the gap, i.e. the first
//     instant after the gap at the same distance from its start (02:30 in a
//     02:00→03:00 gap runs at 03:30). If that coincides with another slot,
//     there is one backup.
//   - A slot whose local time happens twice (fall back) runs once, at its
//     first occurrence.
//   - No backup is due before the anchor instant.
//
// # Retention
//
// Each successful backup gets one tag: Weekly when it is the first successful
// backup of its week, Daily when it is the first of its day, otherwise
// Default; when both Daily and Weekly match, the tag with the lower
// taggingPriority number wins (the CLI sets Weekly 20, Daily 25, Default 99).
// Days and weeks are calendar days and weeks in the policy's time zone; a
// week starts on Sunday (the first value of Azure's DayOfWeek enumeration and
// of .NET's System.DayOfWeek, which the service is written in; Azure does not
// document the first day of the week for FirstOfWeek).
//
// The expiry is the backup time plus the tag's retention duration, added in
// the policy's time zone with calendar semantics: years and months keep the
// day of month, clamped to the month's last day (as .NET's AddMonths does);
// weeks and days keep the wall-clock time; hours, minutes and seconds are
// elapsed time. An expiry whose local time falls in a DST gap moves forward
// by the gap; one that happens twice takes the later occurrence, so a
// recovery point never expires early.
//
// The longest retention is 1 year or 450 backups at the schedule's
// frequency, whichever is shorter (Azure docs: "a maximum retention limit of
// 1 year or 450 disk snapshots, whichever reaches first"; 12-hourly → 225
// days). See MaxRetention and CheckRetention, which take the frequency at
// which a tag keeps backups: the schedule's period for the Default tag, and
// a day or a week for Daily and Weekly, which keep one backup per day or
// week, so that only the year binds them.
package schedule
