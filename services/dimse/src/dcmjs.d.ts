// The part of dcmjs (no bundled types) the C-FIND SCP uses to move between DICOM JSON and the
// naturalized form dcmjs-dimse's Dataset takes.
declare module 'dcmjs' {
  const dcmjs: {
    data: {
      DicomMetaDictionary: {
        naturalizeDataset(json: Record<string, unknown>): Record<string, unknown>;
        denaturalizeDataset(naturalized: Record<string, unknown>): Record<string, unknown>;
        /** The standard data dictionary by "(gggg,eeee)". */
        dictionary: Record<string, { vr?: string } | undefined>;
      };
    };
  };
  export default dcmjs;
}
