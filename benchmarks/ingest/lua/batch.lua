-- Batches of BENCH_BATCH assets, every asset a new id, with the provider's bearer token. The
-- assets are small, or with BENCH_TEMPLATES the documents of that file (one JSON per line, id
-- "__ID__"), taken in turn.
dofile(os.getenv("BENCH_LUA_DIR") .. "/common.lua")
local token = os.getenv("BENCH_TOKEN")
local size = tonumber(os.getenv("BENCH_BATCH"))
local n = 0
local templates = {}
local next_template = 0
local template_file = os.getenv("BENCH_TEMPLATES")
if template_file then
  for line in io.lines(template_file) do
    -- split around the placeholder once, so that a request only concatenates
    local at = string.find(line, "__ID__", 1, true)
    templates[#templates + 1] = {string.sub(line, 1, at - 1), string.sub(line, at + 6)}
  end
end

local function item(id, i)
  if #templates == 0 then
    return '{"id":"' .. id .. '","updated_at":"2026-01-01T00:00:00Z","status":"active","name":"'
      .. i .. ' Bench Street, Detroit, MI","price":{"amount":"52.10","currency":"USD"}}'
  end
  next_template = next_template % #templates + 1
  local parts = templates[next_template]
  return parts[1] .. id .. parts[2]
end

request = function()
  n = n + 1
  local items = {}
  for i = 1, size do
    items[i] = item("batch-" .. tid .. "-" .. n .. "-" .. i, i)
  end
  local body = '{"assets":[' .. table.concat(items, ",") .. ']}'
  return wrk.format("POST", "/v1/assets/batch", {
    ["Content-Type"] = "application/json",
    ["Authorization"] = "Bearer " .. token,
  }, body)
end
