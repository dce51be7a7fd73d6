-- Argo CD health of a GolfTrackerStack (golftracker.io/v1alpha1), from the conditions
-- the stack controller writes: Ready, and StorageReady/DatabaseReady/VaultReady.
local hs = {}
local function condition(conditions, type_)
  for _, c in ipairs(conditions or {}) do
    if c.type == type_ then
      return c
    end
  end
  return nil
end

if obj.status == nil or obj.status.conditions == nil then
  hs.status = "Progressing"
  hs.message = "Waiting for the operator to reconcile the stack"
  return hs
end
if obj.metadata.generation ~= nil and obj.status.observedGeneration ~= nil
    and obj.status.observedGeneration < obj.metadata.generation then
  hs.status = "Progressing"
  hs.message = "Waiting for the operator to see the latest spec"
  return hs
end
local ready = condition(obj.status.conditions, "Ready")
if ready == nil or ready.status == "Unknown" then
  hs.status = "Progressing"
  hs.message = "Waiting for the stack's parts"
  return hs
end
if ready.status == "True" then
  hs.status = "Healthy"
  hs.message = ready.message
  return hs
end
-- Not ready: say which part and why.
local why = {}
for _, part in ipairs({ "StorageReady", "DatabaseReady", "VaultReady" }) do
  local c = condition(obj.status.conditions, part)
  if c ~= nil and c.status ~= "True" then
    table.insert(why, part .. ": " .. c.message)
  end
end
hs.status = "Degraded"
if #why > 0 then
  hs.message = table.concat(why, "; ")
else
  hs.message = ready.message
end
return hs
