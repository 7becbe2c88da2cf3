// Package resource is the vocabulary of Azure Resource Manager that every
// provider shares: resource IDs and scopes (parsed and compared
// case-insensitively, echoed with the caller's casing), the resource
// envelope, systemData, provisioning states, api-version handling and the
// ARM error shape.
package resource
