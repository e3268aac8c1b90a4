-- Argo CD health check for servicepool.dev/ServicePool.
-- Argo CD runs this with the resource as the global `obj` and reads {status, message}.
local hs = {}

local function condition(kind)
  if obj.status == nil or obj.status.conditions == nil then
    return nil
  end
  for _, c in ipairs(obj.status.conditions) do
    if c.type == kind then
      return c
    end
  end
  return nil
end

local function text(c)
  if c.message ~= nil and c.message ~= "" then
    return c.message
  end
  return c.reason or c.type
end

local generation = obj.metadata.generation or 0
if obj.status == nil or obj.status.observedGeneration == nil then
  hs.status = "Progressing"
  hs.message = "Waiting for the operator to report status"
  return hs
end
if obj.status.observedGeneration < generation then
  hs.status = "Progressing"
  hs.message = "Waiting for the operator to act on generation " .. generation
  return hs
end

local ready = condition("Ready")
local degraded = condition("Degraded")
local proxies = condition("ProxyAvailable")
if ready == nil or (ready.observedGeneration or generation) < generation then
  hs.status = "Progressing"
  hs.message = "Waiting for the Ready condition of generation " .. generation
  return hs
end

-- Members not probed yet, or no Pod matching yet: the pool is still coming up.
local unprobed = degraded ~= nil and degraded.status == "True" and degraded.reason == "MembersUnknown"
local starting = unprobed or ready.reason == "NoMembers"

if ready.status ~= "True" then
  hs.status = starting and "Progressing" or "Degraded"
  hs.message = unprobed and text(degraded) or text(ready)
  return hs
end
if degraded ~= nil and degraded.status == "True" then
  hs.status = starting and "Progressing" or "Degraded"
  hs.message = text(degraded)
  return hs
end
if proxies ~= nil and proxies.status ~= "True" then
  hs.status = proxies.reason == "ProxyPodsFailing" and "Degraded" or "Progressing"
  hs.message = text(proxies)
  return hs
end
hs.status = "Healthy"
hs.message = text(ready)
return hs
