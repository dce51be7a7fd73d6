# Vault policy of the GolfTracker operator (Kubernetes auth role `golftracker-operator`),
# with the default mounts (auth `kubernetes`, KV `secret`, database `database`) and KV
# prefix `golftracker`. The end-to-end tests log the operator in with exactly this policy.

# See which engines and auth methods are mounted; mount missing secrets engines.
path "sys/mounts" {
  capabilities = ["read"]
}
path "sys/mounts/secret" {
  capabilities = ["create", "update"]
}
path "sys/mounts/database" {
  capabilities = ["create", "update"]
}
path "sys/auth" {
  capabilities = ["read"]
}

# Worker policies (vaultrs writes them through sys/policy) and their Kubernetes auth roles.
path "sys/policy/golftracker-*" {
  capabilities = ["create", "read", "update"]
}
path "auth/kubernetes/role/golftracker-*" {
  capabilities = ["create", "read", "update"]
}

# Stacks' KV secrets: created when missing (never overwritten: cas=0), read for delivery.
path "secret/data/golftracker/*" {
  capabilities = ["create", "read"]
}
path "secret/metadata/golftracker/*" {
  capabilities = ["read"]
}

# Database secrets engine: connections and roles of stacks, credentials for delivery.
path "database/config/golftracker-*" {
  capabilities = ["create", "update"]
}
path "database/roles/*" {
  capabilities = ["create", "update"]
}
path "database/creds/*" {
  capabilities = ["read"]
}
path "sys/leases/lookup" {
  capabilities = ["update"]
}
path "sys/leases/renew" {
  capabilities = ["update"]
}
