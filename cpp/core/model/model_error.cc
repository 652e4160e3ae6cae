#include "model/model_error.h"

namespace fineserve::model {

const char* errc_code(ModelErrc code) {
  switch (code) {
    case ModelErrc::NotFound: return "ERR_MODEL_NOT_FOUND";
    case ModelErrc::Corrupt: return "ERR_MODEL_CORRUPT";
    case ModelErrc::Unsupported: return "ERR_MODEL_UNSUPPORTED";
    case ModelErrc::ShapeMismatch: return "ERR_MODEL_SHAPE_MISMATCH";
    case ModelErrc::BadWeights: return "ERR_MODEL_BAD_WEIGHTS";
    case ModelErrc::Cancelled: return "ERR_MODEL_CANCELLED";
    case ModelErrc::ContextTooLong: return "ERR_MODEL_CONTEXT_TOO_LONG";
  }
  return "ERR_MODEL";
}

}  // namespace fineserve::model
