import Crypto
import FastCGI
import Foundation
import JSON
import Store

/// Safe retries for `POST /smtp/send-email`: a request carrying
/// `Idempotency-Key` claims the key in the store (shared by every worker
/// and process) before anything is sent, and leaves there the answer that
/// ended the matter. A retry with the same key and body gets that answer
/// again, marked `Idempotent-Replayed: true`, and sends nothing.
///
/// Kept (replayed): 200, 400, 413, 422 and 502 (the outcome is known, or
/// unknowable: "may or may not have been delivered"), and a 504 after the
/// message was handed over. Released (a retry sends): everything that says
/// nothing was handed over and invites a retry: 403, 409, 429, 500, 503
/// and a 504 before the data.
extension Application {
    static let idempotencyHeader = "Idempotency-Key"

    /// The request's key as bytes, nil without the header; 400 unless it is
    /// 1 to 255 printable ASCII characters.
    func idempotencyKey(_ context: RequestContext) throws(APIError) -> [UInt8]? {
        guard let value = context.request.header(Self.idempotencyHeader) else { return nil }
        let key = Array(value.utf8)
        guard (1...255).contains(key.count), key.allSatisfy({ (0x20...0x7E).contains($0) }) else {
            throw APIError(400, .invalidIdempotencyKey, "Idempotency-Key must be 1 to 255 printable ASCII characters")
        }
        return key
    }

    /// Runs `send` at most once for (user, key), answering repeats from the store.
    func idempotently(key: [UInt8], body: [UInt8], of user: String, _ context: RequestContext,
                      send: () throws(APIError) -> CGIResponse) throws(APIError) -> CGIResponse {
        let fingerprint: [UInt8]
        do {
            fingerprint = try Crypto.sha256(body)
        } catch {
            throw internalError("request fingerprint failed", error)
        }
        let claim: IdempotencyClaim
        do {
            claim = try store.claimIdempotencyKey(
                key, for: user, fingerprint: fingerprint, at: Date(timeIntervalSince1970: TimeInterval(now())),
                ttl: configuration.idempotencyTTL, staleAfter: configuration.idempotencyStaleAfter,
                abandonedAnswer: Self.abandonedAnswer)
        } catch {
            throw internalError("idempotency key claim failed", error)
        }
        switch claim {
        case .replay(let answer):
            return replay(answer, context, outcome: "replayed: idempotency key seen before")
        case .abandoned(let answer):
            return replay(answer, context, outcome: "idempotency key abandoned in flight: outcome unknown")
        case .mismatch:
            context.log.outcome = "refused: idempotency key reused with another body"
            throw .validation([.init("idempotency_key_reused", ["header", .string(Self.idempotencyHeader)],
                                     "Idempotency-Key already used with a different request")],
                              code: .idempotencyKeyReused)
        case .inFlight:
            context.log.outcome = "refused: idempotency key in flight"
            throw APIError(409, .idempotencyKeyInFlight, "A request with this Idempotency-Key is still in progress",
                           headers: [("Retry-After", "1")])
        case .claimed(let id):
            let response: CGIResponse
            do {
                response = try send()
            } catch {
                context.errorCode = error.code
                response = error.response
            }
            settle(id, with: response, handedOver: context.messageHandedOver)
            return response
        }
    }

    /// Keeps the answer for replays, or releases the key for a retry.
    /// Should the store fail here, the key stays in flight and turns into
    /// the "outcome unknown" answer after `idempotencyStaleAfter`: never a
    /// second send.
    private func settle(_ id: IdempotencyClaimID, with response: CGIResponse, handedOver: Bool) {
        do {
            if Self.endsTheMatter(response.status, handedOver: handedOver) {
                try store.completeIdempotencyKey(id, answer: IdempotentAnswer(status: response.status, headers: [],
                                                                               body: response.body))
            } else {
                try store.releaseIdempotencyKey(id)
            }
        } catch {
            logger.error("cannot settle an idempotency key (it stays in flight until it counts as abandoned): \(error)")
        }
    }

    static func endsTheMatter(_ status: Int, handedOver: Bool) -> Bool {
        switch status {
        case 200, 400, 413, 422, 502: true
        case 504: handedOver
        default: false
        }
    }

    /// A stored answer as sent the first time (status and JSON body),
    /// marked `Idempotent-Replayed: true`; nothing is sent.
    private func replay(_ answer: IdempotentAnswer, _ context: RequestContext, outcome: String) -> CGIResponse {
        context.log.outcome = outcome
        context.replayed = true
        metrics.idempotentReplays.increment()
        let headers: [(name: String, value: String)] = [("Content-Type", "application/json")]
            + answer.headers.map { ($0.name, $0.value) } + [("Idempotent-Replayed", "true")]
        return CGIResponse(status: answer.status, headers: headers, body: answer.body)
    }

    /// What a key left in flight by a worker that died mid-send answers
    /// from then on: it may have sent the message, so never send again.
    static let abandonedAnswer = IdempotentAnswer(
        status: 502, headers: [],
        body: APIError(502, .deliveryUnknown,
                       "The first request with this Idempotency-Key did not finish: the message may or may not have been delivered").response.body)
}
