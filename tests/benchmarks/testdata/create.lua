-- wrk script for BenchmarkCreateWrk: each request is one create, with an
-- external-id and document-id of its own, the body BenchmarkCreate in
-- apiserver posts (six elements, return_object=limited), spread over 8
-- integration filenames as 8 ERP feeds would be. The API key comes from
-- IHR_WRK_KEY.
local threads = {}

function setup(thread)
  thread:set("tid", #threads + 1)
  table.insert(threads, thread)
end

function init(args)
  n = 0
  wrk.method = "POST"
  wrk.headers["Content-Type"] = "application/json"
  wrk.headers["X-COUPA-API-KEY"] = os.getenv("IHR_WRK_KEY")
end

function request()
  n = n + 1
  local body = string.format(
    '{"contact-alert-type":"Functional","document-id":%d,"document-type":"InvoiceHeader",' ..
    '"external-id":"WRK-%d-%d","integration-filename":"wrk-%d.csv","status":"Success"}',
    tid * 100000000 + n, tid, n, n % 8)
  return wrk.format(nil, "/api/integration_history_records?return_object=limited", nil, body)
end
