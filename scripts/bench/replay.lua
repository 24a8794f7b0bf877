-- wrk script: replays the request list named by the first argument, each thread from its
-- own random starting point, so every connection walks the whole hot/cold mix.
local requests = {}
local position = 0
local thread_count = 0

function setup(thread)
  thread_count = thread_count + 1
  thread:set("thread_index", thread_count)
end

local function unhex(text)
  return (text:gsub("..", function(pair) return string.char(tonumber(pair, 16)) end))
end

function init(args)
  for line in io.lines(args[1]) do
    local method, path, token, content_type, body = line:match("^([^\t]*)\t([^\t]*)\t([^\t]*)\t([^\t]*)\t([^\t]*)$")
    local headers = {}
    if token ~= "" then headers["Authorization"] = "Bearer " .. token end
    if content_type ~= "" then headers["Content-Type"] = content_type end
    local payload = nil
    if body ~= "" then payload = unhex(body) end
    requests[#requests + 1] = wrk.format(method, path, headers, payload)
  end
  position = math.floor(#requests * ((thread_index or 1) - 1) / 2)
end

function request()
  position = position % #requests + 1
  return requests[position]
end
