-- Argo CD health of a SwingAnalysis (golftracker.io/v1alpha1), from the phase the
-- analysis controller writes: Pending, Queued, Running, Succeeded or Failed.
local hs = {}
local function latest_message(conditions)
  local latest = nil
  for _, c in ipairs(conditions or {}) do
    if latest == nil or c.lastTransitionTime > latest.lastTransitionTime then
      latest = c
    end
  end
  if latest == nil then
    return ""
  end
  return latest.message
end

if obj.status == nil or obj.status.phase == nil then
  hs.status = "Progressing"
  hs.message = "Waiting for the operator to pick up the analysis"
  return hs
end
local phase = obj.status.phase
if phase == "Succeeded" then
  hs.status = "Healthy"
elseif phase == "Failed" then
  hs.status = "Degraded"
elseif phase == "Queued" then
  hs.status = "Progressing"
  hs.message = "Queued for a worker slot (position " .. tostring(obj.status.queuePosition or "?") .. ")"
  return hs
else
  -- Pending (stack not ready, video not uploaded yet) and Running.
  hs.status = "Progressing"
end
hs.message = phase .. ": " .. latest_message(obj.status.conditions)
return hs
