-- Batches of BENCH_BATCH assets, every asset a new id, with the provider's bearer token.
dofile(os.getenv("BENCH_LUA_DIR") .. "/common.lua")
local token = os.getenv("BENCH_TOKEN")
local size = tonumber(os.getenv("BENCH_BATCH"))
local n = 0

request = function()
  n = n + 1
  local items = {}
  for i = 1, size do
    items[i] = '{"id":"batch-' .. tid .. "-" .. n .. "-" .. i
      .. '","updated_at":"2026-01-01T00:00:00Z","status":"active","name":"' .. i
      .. ' Bench Street, Detroit, MI","price":{"amount":"52.10","currency":"USD"}}'
  end
  local body = '{"assets":[' .. table.concat(items, ",") .. ']}'
  return wrk.format("POST", "/v1/assets/batch", {
    ["Content-Type"] = "application/json",
    ["Authorization"] = "Bearer " .. token,
  }, body)
end
