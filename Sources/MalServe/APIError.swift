import Hummingbird
import MalCore

/// An error as OpenAI's API returns it: an HTTP status and
/// `{"error": {"message", "type", "param", "code"}}`, which the official clients turn into
/// `BadRequestError`, `AuthenticationError`, `NotFoundError` …
public struct APIError: Error, Sendable {
    public var status: HTTPResponse.Status
    public var message: String
    public var type: String
    public var param: String?
    public var code: String?

    public init(_ status: HTTPResponse.Status, _ message: String, type: String? = nil, param: String? = nil, code: String? = nil) {
        self.status = status
        self.message = message
        self.type = type ?? (status.code >= 500 ? "server_error" : "invalid_request_error")
        self.param = param
        self.code = code
    }

    static func invalid(_ param: String, _ message: String) -> APIError { APIError(.badRequest, message, param: param) }

    var json: JSONValue {
        .object([
            (
                "error",
                .object([
                    ("message", .string(message)), ("type", .string(type)),
                    ("param", param.map(JSONValue.string) ?? .null), ("code", code.map(JSONValue.string) ?? .null),
                ])
            )
        ])
    }

    var response: Response { jsonResponse(json, status: status) }
}

func jsonResponse(_ value: JSONValue, status: HTTPResponse.Status = .ok) -> Response {
    var headers = HTTPFields()
    headers[.contentType] = "application/json"
    return Response(status: status, headers: headers, body: ResponseBody(byteBuffer: ByteBuffer(string: value.serialized + "\n")))
}

/// Every error a route throws, and every unknown route, leaves as an OpenAI error object (never
/// Hummingbird's empty bodies); the bearer token is checked here when the server has a key.
struct APIErrorMiddleware<Context: RequestContext>: RouterMiddleware {
    let apiKey: String?

    func handle(_ request: Request, context: Context, next: (Request, Context) async throws -> Response) async throws -> Response {
        if let apiKey, request.uri.path != "/health" {
            let given = request.headers[.authorization]
            guard given == "Bearer " + apiKey else {
                return APIError(
                    .unauthorized,
                    given == nil
                        ? "missing the Authorization: Bearer header (the server has an API key)"
                        : "incorrect API key", type: "invalid_request_error", code: "invalid_api_key"
                ).response
            }
        }
        do {
            return try await next(request, context)
        } catch let e as APIError {
            return e.response
        } catch let e as HTTPError {
            let message = e.status == .notFound ? "no route \(request.method) \(request.uri.path)" : (e.body ?? "\(e.status)")
            return APIError(e.status, message).response
        } catch let e as MalError {
            return APIError(.internalServerError, "\(e)").response
        } catch {
            return APIError(.internalServerError, "\(error)").response
        }
    }
}
