package dataprotection_test

import (
	"errors"
	"testing"
	"time"

	"coffer/internal/dataprotection"
	"coffer/internal/resource"
)

// TestPolicyOptionErrors: every option BuildDiskPolicy refuses is named,
// so that the policy wizard shows the message at its field; a retention
// over the cap keeps ValidatePolicy's code and message.
func TestPolicyOptionErrors(t *testing.T) {
	tests := []struct {
		opts dataprotection.DiskPolicyOptions
		want dataprotection.PolicyOption
		code string
	}{
		{dataprotection.DiskPolicyOptions{Hours: 3, Retention: "7d"}, dataprotection.OptionHours, ""},
		{dataprotection.DiskPolicyOptions{Time: "25:00", Retention: "7d"}, dataprotection.OptionTime, ""},
		{dataprotection.DiskPolicyOptions{TimeZone: "Mars", Retention: "7d"}, dataprotection.OptionTimeZone, ""},
		{dataprotection.DiskPolicyOptions{}, dataprotection.OptionRetention, ""},
		{dataprotection.DiskPolicyOptions{Retention: "7 days"}, dataprotection.OptionRetention, ""},
		{dataprotection.DiskPolicyOptions{Retention: "7d", DailyRetention: "x"}, dataprotection.OptionDailyRetention, ""},
		{dataprotection.DiskPolicyOptions{Retention: "7d", WeeklyRetention: "12"}, dataprotection.OptionWeeklyRetention, ""},
		{dataprotection.DiskPolicyOptions{Hours: 4, Retention: "76d"}, dataprotection.OptionRetention, dataprotection.CodeRetentionDurationExceeded},
		{dataprotection.DiskPolicyOptions{Hours: 4, Retention: "7d", DailyRetention: "P366D"}, dataprotection.OptionDailyRetention, dataprotection.CodeRetentionDurationExceeded},
		{dataprotection.DiskPolicyOptions{Retention: "7d", WeeklyRetention: "53w"}, dataprotection.OptionWeeklyRetention, dataprotection.CodeRetentionDurationExceeded},
	}
	for _, tt := range tests {
		_, err := dataprotection.BuildDiskPolicy(tt.opts)
		var oe *dataprotection.PolicyOptionError
		if !errors.As(err, &oe) || oe.Option != tt.want {
			t.Errorf("BuildDiskPolicy(%+v) = %v, want an error of option %s", tt.opts, err, tt.want)
			continue
		}
		if tt.code != "" && !resource.IsCode(err, tt.code) {
			t.Errorf("BuildDiskPolicy(%+v) = %v, want code %s", tt.opts, err, tt.code)
		}
	}
	// 75 days of 4-hourly backups is 450 of them: allowed.
	if _, err := dataprotection.BuildDiskPolicy(dataprotection.DiskPolicyOptions{Hours: 4, Retention: "75d"}); err != nil {
		t.Errorf("4-hourly, 75d: %v", err)
	}
}

func TestMaxRuleRetention(t *testing.T) {
	tests := []struct {
		rule    string
		every   time.Duration
		max     time.Duration
		byCount bool
	}{
		{"Default", 4 * time.Hour, 75 * 24 * time.Hour, true},
		{"Default", time.Hour, 450 * time.Hour, true},
		{"Default", 24 * time.Hour, 365 * 24 * time.Hour, false},
		{"Daily", time.Hour, 365 * 24 * time.Hour, false},
		{"weekly", 4 * time.Hour, 365 * 24 * time.Hour, false},
	}
	for _, tt := range tests {
		max, byCount := dataprotection.MaxRuleRetention(tt.rule, tt.every)
		if max != tt.max || byCount != tt.byCount {
			t.Errorf("MaxRuleRetention(%s, %v) = %v, %v; want %v, %v", tt.rule, tt.every, max, byCount, tt.max, tt.byCount)
		}
	}
}
