#include "host/log/log.h"

#include <spdlog/sinks/basic_file_sink.h>
#include <spdlog/sinks/stdout_sinks.h>
#include <spdlog/spdlog.h>

#include <cstdlib>

namespace beaconbox::log {

Result<spdlog::level::level_enum> ParseLogLevel(const std::string& level) {
  for (auto candidate : {spdlog::level::trace, spdlog::level::debug, spdlog::level::info,
                         spdlog::level::warn, spdlog::level::err, spdlog::level::off}) {
    auto name = spdlog::level::to_string_view(candidate);
    if (level == std::string_view(name.data(), name.size())) return candidate;
  }
  if (level == "warn") return spdlog::level::warn;
  if (level == "error") return spdlog::level::err;
  return MakeError(
      ErrorCode::kInvalidArgument,
      "log level \"" + level + "\" is unknown: use trace, debug, info, warn, error or off");
}

Status SetUpLogging(const LogOptions& options) {
  std::string level_text = options.level;
  if (const char* env = std::getenv("BEACONBOX_LOG_LEVEL"); env != nullptr && env[0] != '\0') {
    level_text = env;
  }
  BBX_ASSIGN_OR_RETURN(spdlog::level::level_enum level, ParseLogLevel(level_text));
  std::shared_ptr<spdlog::logger> logger;
  try {
    if (options.file.empty()) {
      logger = std::make_shared<spdlog::logger>(options.program,
                                                std::make_shared<spdlog::sinks::stderr_sink_mt>());
    } else {
      logger = std::make_shared<spdlog::logger>(
          options.program, std::make_shared<spdlog::sinks::basic_file_sink_mt>(options.file));
    }
  } catch (const spdlog::spdlog_ex& error) {
    return MakeError(ErrorCode::kPermission, "log file " + options.file + ": " + error.what());
  }
  logger->set_pattern("[%Y-%m-%dT%H:%M:%S.%e] [%n] [%l] %v");
  logger->set_level(level);
  logger->flush_on(spdlog::level::warn);
  spdlog::set_default_logger(std::move(logger));
  return Status::Ok();
}

}  // namespace beaconbox::log
