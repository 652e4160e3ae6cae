import { expectAssignable, expectError, expectType } from 'tsd';

import {
  type CudaDevice,
  type DeviceReport,
  devices,
  FineserveError,
  NativeLoadError,
  type NativeLoadAttempt,
  type SimdLevel,
} from 'fineserve';

const report = await devices();
expectType<DeviceReport>(report);
expectType<SimdLevel>(report.cpu.simd);
expectType<'cpu'>(report.cpu.kind);
expectType<readonly CudaDevice[]>(report.cuda);
expectType<`cuda:${number}`>(report.cuda[0]!.id);
expectType<string | null>(report.cudaStatus.runtimeVersion);
expectType<string | undefined>(report.cudaStatus.reason);
expectAssignable<SimdLevel>('avx512');
expectError<SimdLevel>('avx1024');
expectError(devices('cuda:0'));
expectError((report.cpu.logicalCores = 4));

const err = new NativeLoadError([]);
expectAssignable<FineserveError>(err);
expectType<string>(err.code);
expectType<readonly NativeLoadAttempt[]>(err.attempts);
